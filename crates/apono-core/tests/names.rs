//! Properties of account name derivation: injective, grammatical, deterministic.

use std::collections::HashMap;

use apono_core::names::{AccountName, AccountNaming, Linux, MySql, NameKind, PostgreSql, Windows};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Identities built to collide if the derivation were careless: the same local parts across
/// domains, case variants, separators that sanitise alike, long parts that truncate alike,
/// Unicode, and bare ids.
fn identity() -> impl Strategy<Value = String> {
    let local = prop_oneof![
        "[a-z]{3,10}",
        "[a-z]{1,6}[._-][a-z]{1,6}",
        "[a-zA-Z0-9._+-]{1,40}",
        "[a-z]{25,60}",
        "[a-zé_İß.-]{1,12}",
        "[0-9]{4,12}",
    ];
    let domain = prop_oneof![
        Just(Some("corp.example")),
        Just(Some("CORP.example")),
        Just(Some("other.example")),
        Just(Some("corp.example.evil")),
        Just(None),
    ];
    (local, domain).prop_map(|(local, domain)| match domain {
        Some(d) => format!("{local}@{d}"),
        None => local,
    })
}

/// 100,000 random identities through each target's limits: distinct normalised identities get
/// distinct names, every name passes its grammar, and deriving again gives the same name.
fn injective_for<K: NameKind>(identities: &[String]) {
    let naming = AccountNaming::new().with_home_domain("corp.example");
    let mut seen: HashMap<String, String> = HashMap::new();
    for identity in identities {
        let name: AccountName<K> = naming.derive(identity);
        AccountName::<K>::parse(name.as_str())
            .unwrap_or_else(|e| panic!("{identity:?} -> {name}: {e}"));
        assert!(name.as_str().len() <= K::MAX_ACCOUNT_LEN);
        assert_eq!(naming.derive::<K>(identity), name, "not deterministic");
        let normalised = identity.trim().to_lowercase();
        if let Some(previous) = seen.insert(name.to_string(), normalised.clone()) {
            assert_eq!(
                previous,
                normalised,
                "{previous:?} and {normalised:?} both map to {name} on {}",
                K::SYSTEM
            );
        }
    }
}

#[test]
fn hundred_thousand_identities_never_share_a_name() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = identity();
    let identities: Vec<String> = (0..100_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let distinct: std::collections::HashSet<_> =
        identities.iter().map(|i| i.trim().to_lowercase()).collect();
    assert!(
        distinct.len() > 80_000,
        "generator too repetitive: {}",
        distinct.len()
    );
    injective_for::<Linux>(&identities);
    injective_for::<Windows>(&identities);
    injective_for::<PostgreSql>(&identities);
    injective_for::<MySql>(&identities);
}

proptest! {
    #[test]
    fn any_text_derives_a_valid_name(identity in any::<String>(), home in "[a-z]{1,8}\\.example") {
        let naming = AccountNaming::new().with_home_domain(home);
        let linux: AccountName<Linux> = naming.derive(&identity);
        prop_assert!(AccountName::<Linux>::parse(linux.as_str()).is_ok());
        let windows: AccountName<Windows> = naming.derive(&identity);
        prop_assert!(AccountName::<Windows>::parse(windows.as_str()).is_ok());
        prop_assert_eq!(naming.derive::<Linux>(&identity), linux);
    }

    #[test]
    fn parse_never_accepts_shell_metacharacters(name in "\\PC{0,40}") {
        if let Ok(parsed) = AccountName::<Linux>::parse(name.as_str()) {
            prop_assert!(parsed.as_str().bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit() || b == b'_' || b == b'-'));
            prop_assert!(!parsed.as_str().starts_with('-'));
        }
    }
}
