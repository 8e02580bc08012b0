//! Field checks shared by every command: ids, lengths, counts and ranges. Each names the
//! field it rejects, so the caller can tell what to fix.

use std::collections::BTreeMap;

use crate::error::DomainError;

/// Longest id accepted for any object, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest name accepted (of a customer, agent, queue or site; also intents and dispositions), in
/// bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most entries one attribute map may hold.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute key accepted, in bytes.
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
/// Longest attribute value accepted, in bytes.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1024;
/// Free text such as contact notes and break reasons.
pub const MAX_TEXT_LEN: usize = 4096;

/// Checks that `id` is a usable object id: non-empty, bounded, printable ASCII without
/// spaces. `field` names the field in the error.
pub fn validate_id(field: &str, id: &str) -> Result<(), DomainError> {
    if id.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(DomainError::invalid(
            field,
            format!("{} bytes, at most {MAX_ID_LEN} allowed", id.len()),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        return Err(DomainError::invalid(
            field,
            format!("character {c:?} not allowed (letters, digits and - _ . : @ only)"),
        ));
    }
    Ok(())
}

/// Refuses a string longer than `max` bytes, naming `field`.
pub fn validate_len(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.len() > max {
        return Err(DomainError::invalid(
            field,
            format!("{} bytes, at most {max} allowed", value.len()),
        ));
    }
    Ok(())
}

/// A required, bounded, human-readable name.
pub fn validate_name(field: &str, value: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    validate_len(field, value, MAX_NAME_LEN)
}

/// Refuses a list with more than `max` entries, naming `field`.
pub fn validate_count(field: &str, count: usize, max: usize) -> Result<(), DomainError> {
    if count > max {
        return Err(DomainError::invalid(
            field,
            format!("{count} entries, at most {max} allowed"),
        ));
    }
    Ok(())
}

/// Refuses a number outside `min..=max`, naming `field` and the range.
pub fn validate_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), DomainError> {
    if value < min || value > max {
        return Err(DomainError::invalid(
            field,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(())
}

/// A free-form string map, such as customer or contact attributes.
pub fn validate_attributes(
    field: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<(), DomainError> {
    validate_count(field, attributes.len(), MAX_ATTRIBUTES)?;
    for (key, value) in attributes {
        if key.is_empty() {
            return Err(DomainError::invalid(field, "keys must not be empty"));
        }
        validate_len(&format!("{field} key"), key, MAX_ATTRIBUTE_KEY_LEN)?;
        validate_len(&format!("{field}[{key}]"), value, MAX_ATTRIBUTE_VALUE_LEN)?;
    }
    Ok(())
}
