//! DHIS2 UIDs: 11 characters, `^[a-zA-Z][a-zA-Z0-9]{10}$` (`CodeGenerator.java`).

use rand::Rng;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Length of a DHIS2 UID.
pub const UID_LEN: usize = 11;

/// A new random UID.
pub fn generate() -> String {
    let mut rng = rand::rng();
    let mut uid = String::with_capacity(UID_LEN);
    uid.push(char::from(LETTERS[rng.random_range(0..LETTERS.len())]));
    for _ in 1..UID_LEN {
        uid.push(char::from(ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())]));
    }
    uid
}

/// Whether `s` is a valid DHIS2 UID.
pub fn is_valid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == UID_LEN && bytes[0].is_ascii_alphabetic() && bytes[1..].iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_uids_are_valid_and_distinct() {
        let uids: std::collections::HashSet<String> = (0..2000).map(|_| generate()).collect();
        assert_eq!(uids.len(), 2000);
        assert!(uids.iter().all(|u| is_valid(u)));
    }

    #[test]
    fn validity() {
        assert!(is_valid("abcDEF12345"));
        assert!(!is_valid("1bcDEF12345"));
        assert!(!is_valid("abcDEF1234"));
        assert!(!is_valid("abcDEF123456"));
        assert!(!is_valid("abcDEF1234_"));
        assert!(!is_valid("abcDEF1234é"));
    }
}
