//! Address text as the clouds accept it: an IP address or a CIDR block of
//! one family. Only checked, never rewritten: the fake keeps what it was sent.

use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The family of `text` when it is an address or a CIDR block with a
/// prefix length that fits it, else `None`.
pub fn family(text: &str) -> Option<Family> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let (family, bits) = match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => (Family::V4, 32),
        IpAddr::V6(_) => (Family::V6, 128),
    };
    let fits = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u8>().is_ok_and(|n| n <= bits)
    });
    fits.then_some(family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks_of_either_family_are_recognised() {
        assert_eq!(family("10.0.0.0/8"), Some(Family::V4));
        assert_eq!(family("10.0.0.1"), Some(Family::V4));
        assert_eq!(family("2001:db8::/32"), Some(Family::V6));
        assert_eq!(family("10.0.0.0/33"), None);
        assert_eq!(family("10.0.0.0/"), None);
        assert_eq!(family("10.0.0.0/+8"), None);
        assert_eq!(family("all"), None);
    }
}
