//! The queries of docs/REPORTING.md, read from the document itself so that the tests and the
//! benchmark run exactly what analysts are told to run.

/// (heading, SQL) for one dialect: plain ```sql blocks and the ```sql <dialect> ones.
pub fn documented_queries(dialect: &str) -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/REPORTING.md"))
        .expect("docs/REPORTING.md is readable");
    let own = format!("```sql {dialect}");
    let mut queries = Vec::new();
    let mut heading = String::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("### ") {
            heading = title.to_owned();
        } else if line == "```sql" || line == own {
            let sql: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            queries.push((heading.clone(), sql.join("\n")));
        }
    }
    queries
}
