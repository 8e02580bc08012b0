//! The encoded size of a value, computed without encoding it: what bounds the request log
//! by bytes. It counts as Banyan's codec (postcard) writes, varints included, so the same
//! value has the same size on every replica and in every release that keeps the codec.

use serde::ser::{self, Serialize};

/// The bytes `value` takes encoded (postcard's format, without Banyan's version byte).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Counting cannot fail: every method adds and returns Ok.
    let _ = value.serialize(&mut counter);
    counter.0
}

/// Bytes a varint of `n` takes.
fn varint(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes a zigzag varint of `n` takes.
fn zigzag(n: i64) -> usize {
    varint(((n << 1) ^ (n >> 63)) as u64)
}

struct Counter(usize);

/// Never produced: counting does not fail.
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("counting cannot fail")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

type Done = Result<(), Never>;

impl ser::Serializer for &mut Counter {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Done {
        self.0 += 1;
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Done {
        self.0 += 1;
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Done {
        self.0 += zigzag(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Done {
        self.0 += zigzag(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Done {
        self.0 += zigzag(v);
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Done {
        self.0 += 1;
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Done {
        self.0 += varint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Done {
        self.0 += varint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Done {
        self.0 += varint(v);
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Done {
        self.0 += 4;
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Done {
        self.0 += 8;
        Ok(())
    }
    fn serialize_char(self, v: char) -> Done {
        self.0 += v.len_utf8() + 1;
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Done {
        self.0 += varint(v.len() as u64) + v.len();
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Done {
        self.0 += varint(v.len() as u64) + v.len();
        Ok(())
    }
    fn serialize_none(self) -> Done {
        self.0 += 1;
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        self.0 += 1;
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Done {
        self.0 += varint(index.into());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Done {
        self.0 += varint(index.into());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Never> {
        self.0 += varint(len.unwrap_or(0) as u64);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        self.0 += varint(index.into());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Never> {
        self.0 += varint(len.unwrap_or(0) as u64);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        self.0 += varint(index.into());
        Ok(self)
    }
}

/// The compound parts only add their elements.
macro_rules! compound {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Counter {
            type Ok = ();
            type Error = Never;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
                value.serialize(&mut **self)
            }
            fn end(self) -> Done {
                Ok(())
            }
        }
    )*};
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Done {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Counter {
            type Ok = ();
            type Error = Never;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Done {
                value.serialize(&mut **self)
            }
            fn end(self) -> Done {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_take_seven_bits_a_byte() {
        assert_eq!(varint(0), 1);
        assert_eq!(varint(127), 1);
        assert_eq!(varint(128), 2);
        assert_eq!(varint(u64::MAX), 10);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(-65), 2);
        assert_eq!(zigzag(i64::MIN), 10);
    }
}
