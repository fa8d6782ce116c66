//! The bootstrap cache: an equal VM's second create skips the bootstrap.

use super::*;

#[test]
fn second_create_of_an_equal_vm_hits_the_cache() {
    let runtime = runtime();
    let home = runtime.home("cache");
    let extra = "format = \"raw\"\n[create]\nbootloader = \"direct\"\n";
    let first = home.project("one", &config("one", extra));
    let second = home.project("two", &config("two", extra));
    let report = create_ok(&home, &first, &[]);
    // The first may hit too: other tests share the cache.
    let key = report["cache_key"].as_str().unwrap().to_owned();
    let report = create_ok(&home, &second, &[]);
    assert_eq!(report["cache"], "hit", "{report}");
    assert_eq!(report["cache_key"], key.as_str());
    let log = std::fs::read_to_string(home.data("two").join("create.log")).unwrap();
    assert!(log.contains("bootstrap cache hit"), "{log}");
    assert!(!log.contains("$ mmdebstrap"), "{log}");

    let out = home.run(kvmx_create(), &first, &["cache", "list", "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == key.as_str()),
        "{list}"
    );
}
