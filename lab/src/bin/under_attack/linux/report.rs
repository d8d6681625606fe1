//! The side-by-side tables every attack prints: one figure per row, one column per
//! server, and whether each goal was met.

use comfy_table::{Table, presets};

/// One figure per row, one column per server.
pub(super) struct Comparison {
    pub(super) title: String,
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<(String, Vec<String>)>,
    pub(super) notes: Vec<String>,
}

impl Comparison {
    pub(super) fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, figure: impl Into<String>, cells: Vec<String>) {
        self.rows.push((figure.into(), cells));
    }

    pub(super) fn print(&self) {
        let mut table = Table::new();
        table.load_preset(presets::ASCII_MARKDOWN);
        let mut header = vec!["figure".to_owned()];
        header.extend(self.columns.iter().cloned());
        table.set_header(header);
        for (figure, cells) in &self.rows {
            let mut row = vec![figure.clone()];
            row.extend(cells.iter().cloned());
            table.add_row(row);
        }
        println!("\n### {}\n\n{table}\n", self.title);
        for note in &self.notes {
            println!("{note}");
        }
    }
}

pub(super) fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "MISSED" }
}
