//! Media channels and per-channel amounts (capacity, load).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a contact reaches the center. An agent's capacity is counted per channel.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Channel {
    /// A phone call.
    #[default]
    Voice,
    /// A web or messaging chat; an agent can usually hold several at once.
    Chat,
    /// An email, answered in writing.
    Email,
    /// An agent calls the customer back; the caller's place in the queue was kept.
    Callback,
}

impl Channel {
    /// Every channel in index order, for checks and totals that go channel by channel.
    pub const ALL: [Channel; 4] = [
        Channel::Voice,
        Channel::Chat,
        Channel::Email,
        Channel::Callback,
    ];

    /// The channel's slot in a [`PerChannel`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lower-case name that field paths in errors, metrics and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Callback => "callback",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One number per channel, indexed by [`Channel`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PerChannel(pub [u32; 4]);

impl PerChannel {
    /// The capacity an agent gets when none is configured: one call, three chats, five
    /// emails, one callback.
    pub const DEFAULT_CAPACITY: PerChannel = PerChannel([1, 3, 5, 1]);

    /// The amount for one channel, such as an agent's capacity or load on it.
    pub fn get(&self, channel: Channel) -> u32 {
        self.0[channel.index()]
    }

    /// The amount for one channel, to count a contact into or out of an agent's load.
    pub fn get_mut(&mut self, channel: Channel) -> &mut u32 {
        &mut self.0[channel.index()]
    }

    /// The sum over every channel: all the contacts an agent holds, for `FEWEST_CONTACTS`.
    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }
}
