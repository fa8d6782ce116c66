//! The kvmxfile evaluator must never panic, whatever it is given, and its
//! errors and assignments must point at lines that exist.

use std::collections::BTreeMap;

use kvmx_core::legacy::shell::{CommandRunner, ShellContext, evaluate};
use proptest::prelude::*;

/// Never runs anything; answers with text that is itself shell-ish.
struct FakeRunner;

impl CommandRunner for FakeRunner {
    fn run(&mut self, command: &str, _: &BTreeMap<String, String>) -> Result<String, String> {
        if command.contains('!') {
            Err("refused".to_owned())
        } else {
            Ok(format!("${{{command}}}\"'"))
        }
    }
}

fn check(source: &str) {
    let context = ShellContext {
        provided: BTreeMap::from([("HOME".to_owned(), "/home/user".to_owned())]),
        environment: BTreeMap::new(),
    };
    let last_line = source.split('\n').count();
    match evaluate(source, &context, &mut FakeRunner) {
        Ok(assignments) => {
            for a in assignments {
                assert!((1..=last_line).contains(&a.line), "{a:?}");
            }
        }
        Err(e) => {
            assert!((1..=last_line).contains(&e.line()), "{e}");
            assert!(e.to_string().starts_with(&format!("line {}", e.line())));
        }
    }
}

const SHELLISH: &[char] = &[
    '$', '{', '}', '"', '\'', '`', '(', ')', '\\', '#', '=', '\n', ' ', ':', '~', '-', '+', '!',
    'a', 'b', '_', '1',
];

fn shellish(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SHELLISH), 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_do_not_panic(source in any::<String>()) {
        check(&source);
    }

    #[test]
    fn shellish_strings_do_not_panic(source in shellish(120)) {
        check(&source);
    }

    #[test]
    fn shellish_values_do_not_panic(value in shellish(80), more in shellish(40)) {
        check(&format!("a={value}\nb=\"{more}\"\n"));
    }
}
