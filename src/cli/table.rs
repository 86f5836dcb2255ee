//! `--table`: JSON answers as a readable table (a list of objects as rows, one object as rows of
//! field and value, a page as its content).

use serde_json::Value;

const MAX_CELL: usize = 40;

pub fn print_json(value: &Value, table: bool) -> anyhow::Result<()> {
    if table {
        print!("{}", render(value));
    } else {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

pub fn render(value: &Value) -> String {
    match value {
        Value::Object(map) if map.get("content").is_some_and(Value::is_array) => render(&map["content"]),
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            let mut columns: Vec<String> = Vec::new();
            for row in rows {
                for key in row.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !columns.contains(key) {
                        columns.push(key.clone());
                    }
                }
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|c| cell(row.get(c).unwrap_or(&Value::Null))).collect())
                .collect();
            grid(&columns, &cells)
        }
        Value::Object(map) => {
            let rows: Vec<Vec<String>> = map.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect();
            grid(&["field".into(), "value".into()], &rows)
        }
        other => format!("{}\n", cell(other)),
    }
}

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut short: String = text.chars().take(MAX_CELL).collect();
    if text.chars().count() > MAX_CELL {
        short.push('…');
    }
    short.replace(['\n', '\r', '\t'], " ")
}

pub fn grid(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header);
    out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_of_objects_becomes_aligned_rows() {
        let page =
            json!({"content": [{"robotCallJobId": 43, "name": "任务"}, {"robotCallJobId": 7, "status": "COMPLETED"}]});
        let text = render(&page);
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let header: String = lines[0].iter().collect();
        assert_eq!(header, "name  robotCallJobId  status", "columns are the union of keys");
        let column = |name: &str| header.find(name).unwrap();
        let at = |row: usize, col: usize| lines[row][col..].iter().collect::<String>();
        assert!(at(2, 0).starts_with("任务"));
        assert!(at(2, column("robotCallJobId")).starts_with("43"));
        assert!(at(3, column("robotCallJobId")).starts_with('7'));
        assert_eq!(at(3, column("status")), "COMPLETED");
    }

    #[test]
    fn one_object_becomes_field_value_rows_and_long_values_are_cut() {
        let text = render(&json!({"tenantId": 1, "note": "x".repeat(60)}));
        assert!(text.contains("tenantId  1"));
        assert!(text.contains(&format!("{}…", "x".repeat(40))));
    }
}
