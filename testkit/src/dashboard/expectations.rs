//! What the tests' ordinary traffic shows on each panel, where that is not a
//! non-zero number: a table the dashboard tests and the attack tests share, so
//! that "this panel stays at zero" is written once and proven both ways.

/// What a panel's query shows under the tests' ordinary traffic (good logins, wrong
/// passwords, malformed bodies, one client at a time), when that is not a non-zero
/// number: the tests check exactly this instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly zero: ordinary traffic gets nobody throttled, shed or queued.
    /// `tests/under_attack.rs` proves the same queries show an attack.
    Zero,
    /// A valid answer, empty under ordinary traffic: the alerts panel while no alert
    /// fires (`tests/alerting.rs` and `tests/probe.rs` prove it lists one that fires),
    /// and the probe panels where no blackbox exporter runs ([`PROBE_PANELS`];
    /// `tests/probe.rs` proves they show the probe).
    Answer,
}

/// The panels that show the blackbox exporter's probe (job `login_probe`), not the
/// server's own metrics: they answer only where a probe runs.
pub const PROBE_PANELS: [&str; 2] = ["Login probe", "Login probe duration by phase"];

/// The panels [`Expect`] covers: `(title, refId, expectation)`.
pub const NOT_NONZERO_UNDER_ORDINARY_TRAFFIC: [(&str, &str, Expect); 6] = [
    (
        "Throttled (429) and shed (503) per second",
        "A",
        Expect::Zero,
    ),
    (
        "Throttled (429) and shed (503) per second",
        "B",
        Expect::Zero,
    ),
    ("Hashing queue", "A", Expect::Zero),
    ("Firing alerts", "A", Expect::Answer),
    (PROBE_PANELS[0], "A", Expect::Answer),
    (PROBE_PANELS[1], "A", Expect::Answer),
];

/// What the query `ref_id` of panel `title` shows under ordinary traffic; `None`
/// for the usual: a non-zero number.
#[must_use]
pub fn expect_under_ordinary_traffic(title: &str, ref_id: &str) -> Option<Expect> {
    NOT_NONZERO_UNDER_ORDINARY_TRAFFIC
        .iter()
        .find(|(t, r, _)| *t == title && *r == ref_id)
        .map(|(_, _, expect)| *expect)
}
