//! One pinned tag per engine: the harness default, `docker-compose.yml`, the README
//! and the book name the same image, so a reader never copies a tag the tests did not
//! use. Every tag pinned here is one a release note confirms (see the test kit's docs, "Pinned images").

use std::collections::BTreeMap;

use login_metrics_testkit::book::markdown_files;
use login_metrics_testkit::harness::{
    alertmanager, blackbox, grafana, prometheus, victoria_metrics,
};
use login_metrics_testkit::repo_root;
use regex::Regex;

/// Image name → the tag the harness pins.
fn pinned() -> BTreeMap<&'static str, &'static str> {
    [
        prometheus::DEFAULT_IMAGE,
        alertmanager::DEFAULT_IMAGE,
        grafana::DEFAULT_IMAGE,
        victoria_metrics::DEFAULT_IMAGE,
        blackbox::DEFAULT_IMAGE,
    ]
    .into_iter()
    .map(|reference| reference.split_once(':').expect("a pinned tag"))
    .collect()
}

#[test]
fn every_image_the_repository_names_is_the_pinned_one() {
    let pinned = pinned();
    let names = pinned
        .keys()
        .map(|name| regex::escape(name))
        .collect::<Vec<_>>()
        .join("|");
    let reference = Regex::new(&format!(r"({names}):([A-Za-z0-9][A-Za-z0-9._-]*)")).unwrap();

    let root = repo_root();
    let mut files = markdown_files(&root.join("book").join("src")).unwrap();
    files.extend(
        [
            "README.md",
            "docker-compose.yml",
            "deploy/probe/compose.yml",
        ]
        .map(|f| root.join(f)),
    );
    let mut seen = BTreeMap::<&str, usize>::new();
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for found in reference.captures_iter(&text) {
            let name = found.get(1).unwrap().as_str();
            let tag = found.get(2).unwrap().as_str().trim_end_matches('.');
            let (pinned_name, pinned_tag) = pinned.get_key_value(name).unwrap();
            *seen.entry(pinned_name).or_default() += 1;
            if tag != *pinned_tag {
                wrong.push(format!("{}: {name}:{tag}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "tags that differ from the harness defaults {pinned:?}:\n{}",
        wrong.join("\n")
    );
    for name in pinned.keys() {
        assert!(seen.contains_key(name), "{name} is named nowhere: {seen:?}");
    }
}
