//! The offline HTML index of a run directory: the tables and every PNG figure beside them.
use std::path::Path;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown pipe table -> HTML table (bold cells kept bold).
pub fn md_table_to_html(md: &str) -> String {
    let mut out = String::from("<table>\n");
    for (i, line) in md.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue; // the |---| rule
        }
        let tag = if i == 0 { "th" } else { "td" };
        out += "<tr>";
        for cell in line.trim_matches('|').split(" |") {
            let c = cell.trim();
            let c = match c.strip_prefix("**").and_then(|x| x.strip_suffix("**")) {
                Some(b) => format!("<b>{}</b>", esc(b)),
                None => esc(c),
            };
            out += &format!("<{tag}>{c}</{tag}>");
        }
        out += "</tr>\n";
    }
    out + "</table>\n"
}

/// What a figure shows, from its file name.
fn describe(name: &str) -> &'static str {
    if name.starts_with("figure1_gallery") {
        "Figure 1 style: each method's image heat map (jet, normalised per map) and token scores for one scene of the test split."
    } else if name.starts_with("sanity_") {
        "Cascading randomisation from the top (projections, final norms, layers, embeddings): mean similarity of each method's maps to its maps on the intact model; dashed: the method's noise floor (two seeds, intact model). A method that passes falls well below its floor."
    } else if name.starts_with("grid_") {
        "M2IB's layer x beta x noise grid: one panel per layer, beta on the rows, sigma on the columns; the best cell is outlined."
    } else {
        ""
    }
}

/// Writes `dir/index.html` from the given (title, markdown table) sections and the PNGs under
/// `dir/figures`.
pub fn write_index(
    dir: &Path,
    title: &str,
    tables: &[(String, String)],
    notes: &str,
) -> std::io::Result<()> {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:4px 6px;text-align:right}}\
         th{{background:#f0f0f0}}img{{max-width:100%;border:1px solid #ddd;margin:6px 0}}</style></head><body><h1>{t}</h1><p>{n}</p>\n",
        t = esc(title),
        n = esc(notes)
    );
    for (name, md) in tables {
        html += &format!("<h2>{}</h2>\n{}", esc(name), md_table_to_html(md));
    }
    let figs = dir.join("figures");
    if let Ok(entries) = std::fs::read_dir(&figs) {
        let mut pngs: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".png"))
            .collect();
        pngs.sort();
        if !pngs.is_empty() {
            html += "<h2>Figures</h2>\n";
        }
        for p in pngs {
            html += &format!(
                "<h3>{}</h3><p>{}</p><img src=\"figures/{}\">\n",
                esc(&p),
                esc(describe(&p)),
                esc(&p)
            );
        }
    }
    html += "</body></html>\n";
    std::fs::write(dir.join("index.html"), html)
}

/// A relative path as a URL: characters that end or change a URL percent-encoded.
fn url(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            '%' | '#' | '?' | ' ' | '"' | '<' | '>' | '&' | '\'' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out += &format!("%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One explained pair for `write_pairs_index`: its caption, image file, and per method the
/// figure's path relative to the index (None when the pair failed).
pub struct PairEntry {
    pub caption: String,
    pub image: String,
    pub figures: Vec<(String, Option<String>)>,
}

/// `m2ib attribute` over several pairs: one page with a row per pair and a column per method.
pub fn write_pairs_index(dir: &Path, model: &str, pairs: &[PairEntry]) -> std::io::Result<()> {
    let methods: Vec<&str> = pairs
        .first()
        .map(|p| p.figures.iter().map(|(m, _)| m.as_str()).collect())
        .unwrap_or_default();
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>m2ib attribute</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:6px;vertical-align:top}}th{{background:#f0f0f0}}\
         img{{max-width:560px}}</style></head><body><h1>{} pairs explained with {}</h1>\
         <p>Each figure: the input, the map overlaid (the model's centre crop outlined), the caption's tokens coloured by score. Click for full size.</p>\
         <table><tr><th>#</th><th>caption</th>{}</tr>\n",
        pairs.len(),
        esc(model),
        methods
            .iter()
            .map(|m| format!("<th>{}</th>", esc(m)))
            .collect::<String>()
    );
    for (k, p) in pairs.iter().enumerate() {
        html += &format!(
            "<tr><td>{}</td><td>{}<br><small>{}</small></td>",
            k + 1,
            esc(&p.caption),
            esc(&p.image)
        );
        for (_, f) in &p.figures {
            html += &match f {
                Some(f) => format!("<td><a href=\"{0}\"><img src=\"{0}\"></a></td>", url(f)),
                None => "<td>failed (see the messages)</td>".to_string(),
            };
        }
        html += "</tr>\n";
    }
    html += "</table></body></html>\n";
    std::fs::write(dir.join("index.html"), html)
}

#[cfg(test)]
mod pair_index_tests {
    use super::*;

    #[test]
    fn links_survive_odd_file_names_and_failed_pairs_say_so() {
        assert_eq!(
            url("0000-a#1 %/m2ib/overlay.png"),
            "0000-a%231%20%25/m2ib/overlay.png"
        );
        let d = std::env::temp_dir().join(format!("m2ib-pairs-index-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let pairs = [PairEntry {
            caption: "a <red> circle".into(),
            image: "x.png".into(),
            figures: vec![
                ("m2ib".into(), Some("0000-x/overlay.png".into())),
                ("rise".into(), None),
            ],
        }];
        write_pairs_index(&d, "tiny", &pairs).unwrap();
        let html = std::fs::read_to_string(d.join("index.html")).unwrap();
        assert!(
            html.contains("a &lt;red&gt; circle") && html.contains("src=\"0000-x/overlay.png\"")
        );
        assert!(html.contains("failed"));
        std::fs::remove_dir_all(&d).ok();
    }
}
