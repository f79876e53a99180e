//! Random passwords for the accounts a grant creates (Windows, Rancher, OpenBao userpass).
//!
//! One policy serves every target: [`PASSWORD_LEN`] (32) characters drawn uniformly from
//! [`ALPHABET`] — upper- and lower-case letters, digits and twelve symbols — by `rand`'s
//! thread generator (ChaCha, seeded and reseeded from the operating system's CSPRNG), with at
//! least one character of each of the four classes. That meets Windows' complexity rules
//! (three of four classes; 32 is under every length limit), Rancher's `password-min-length`
//! (12 by default) and OpenBao's userpass (any text). Letters and digits that are easy to
//! misread (`I`, `O`, `l`, `0`, `1`) are left out, since some targets show the password to a
//! person; and no symbol is a quote, a backslash, a space or `$`, so a password passes through
//! JSON, PowerShell and shell strings without escaping.
//!
//! ```
//! use apono_core::password::{PASSWORD_LEN, generate_password};
//! use secrecy::ExposeSecret;
//! let password = generate_password();
//! assert_eq!(password.expose_secret().len(), PASSWORD_LEN);
//! ```

use rand::RngExt;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// Length of every generated password, in characters (all ASCII).
pub const PASSWORD_LEN: usize = 32;

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGIT: &[u8] = b"23456789";
const SYMBOL: &[u8] = b"!#%+-.=?@^_~";

/// Every character a generated password may contain.
pub const ALPHABET: &str = concat!(
    "ABCDEFGHJKLMNPQRSTUVWXYZ",
    "abcdefghijkmnopqrstuvwxyz",
    "23456789",
    "!#%+-.=?@^_~"
);

/// A fresh random password under the [module's policy](self).
pub fn generate_password() -> SecretString {
    let alphabet = ALPHABET.as_bytes();
    let mut rng = rand::rng();
    loop {
        // Zeroizing: the drafts that miss a class are wiped, not just freed.
        let mut draft = Zeroizing::new(String::with_capacity(PASSWORD_LEN));
        for _ in 0..PASSWORD_LEN {
            draft.push(char::from(alphabet[rng.random_range(0..alphabet.len())]));
        }
        let has = |class: &[u8]| draft.bytes().any(|b| class.contains(&b));
        if has(UPPER) && has(LOWER) && has(DIGIT) && has(SYMBOL) {
            // Moved out without a copy; the emptied draft is what gets wiped.
            return SecretString::from(std::mem::take(&mut *draft));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::BTreeSet;

    #[test]
    fn the_alphabet_is_the_four_classes() {
        assert_eq!(ALPHABET.as_bytes(), [UPPER, LOWER, DIGIT, SYMBOL].concat());
        let unique: BTreeSet<u8> = ALPHABET.bytes().collect();
        assert_eq!(unique.len(), ALPHABET.len(), "no character twice");
        for unsafe_char in ['"', '\'', '`', '\\', '$', ' ', 'I', 'O', 'l', '0', '1'] {
            assert!(!ALPHABET.contains(unsafe_char), "{unsafe_char:?}");
        }
    }

    #[test]
    fn passwords_follow_the_policy() {
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let password = generate_password();
            let text = password.expose_secret();
            assert_eq!(text.len(), PASSWORD_LEN);
            assert!(text.bytes().all(|b| ALPHABET.as_bytes().contains(&b)));
            for class in [UPPER, LOWER, DIGIT, SYMBOL] {
                assert!(text.bytes().any(|b| class.contains(&b)), "{class:?}");
            }
            assert!(seen.insert(text.to_owned()), "a password came twice");
        }
    }

    #[test]
    fn every_character_is_used() {
        // 2,000 passwords draw 64,000 characters from 69: each appears ~900 times, so a
        // character that never does means a biased or truncated draw.
        let used: BTreeSet<u8> = (0..2000)
            .flat_map(|_| {
                generate_password()
                    .expose_secret()
                    .bytes()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(used.len(), ALPHABET.len());
    }
}
