//! `scorecard.html`: the page a security team reads after `advox eval --suite`: per harmful
//! target, how often an attacker gets it through at each bound (SNR floor or L∞), as heard by
//! the attacked model and by each independent recogniser, over the air, through each defence
//! (the better of the non-adaptive and the adaptive attack), and how often each detector flags
//! it at a 5 % false-alarm rate — and how often an attack made to evade it gets through.

use super::bound_name;
use super::html::{esc, pct};
use super::report::{Cell, Report};
use crate::plot::{line_chart, Axes, Series};
use crate::Result;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The verifier settings that appear in `cells`, in first-seen order.
fn heard_settings(cells: &[Cell]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cells {
        for k in c.heard_success.keys() {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

/// Attack success through defence `d` in cell `c`: the better of both attacks where the
/// adaptive one ran, else the non-adaptive figure (marked).
fn through(c: &Cell, d: &str) -> String {
    match c.defenses.get(d) {
        Some(v) => match &v.worst_case {
            Some(w) => pct(w.attack_success_rate),
            None => format!("{} (non-adaptive)", pct(v.non_adaptive.attack_success_rate)),
        },
        None => "–".into(),
    }
}

fn table(h: &mut String, report: &Report, cells: &[Cell]) {
    let s = &report.settings;
    let heard = heard_settings(cells);
    let defenses: Vec<&String> = s.defenses.iter().filter(|d| *d != "none").collect();
    let _ = write!(
        h,
        "<table><tr><th class=l>attack</th><th>bound</th><th>examples</th><th>SNR dB (mean)</th>\
         <th>success ({})</th>",
        esc(s.models.first().map_or("model", |m| m.as_str()))
    );
    for v in &heard {
        let _ = write!(h, "<th>heard by {}</th>", esc(v));
    }
    if s.over_the_air.is_some() {
        h.push_str("<th>over the air</th>");
    }
    for d in &defenses {
        let _ = write!(h, "<th>through {}</th>", esc(d));
    }
    for d in &s.detectors {
        let _ = write!(
            h,
            "<th>{} flags (5 % FPR)</th><th>evades {}</th>",
            esc(d),
            esc(d)
        );
    }
    h.push_str("</tr>");
    for c in cells {
        let _ = write!(
            h,
            "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td>",
            c.attack,
            bound_name(c.eps, c.snr_bound_db),
            c.examples,
            c.snr_db.map_or("–".into(), |x| format!("{:.1}", x.mean)),
            pct(c.success_rate)
        );
        for v in &heard {
            let _ = write!(
                h,
                "<td>{}</td>",
                c.heard_success.get(v).map_or("–".into(), |x| pct(*x))
            );
        }
        if s.over_the_air.is_some() {
            let _ = write!(
                h,
                "<td>{}</td>",
                c.over_the_air_success.map_or("–".into(), pct)
            );
        }
        for d in &defenses {
            let _ = write!(h, "<td>{}</td>", through(c, d));
        }
        for d in &s.detectors {
            match c.detectors.get(d) {
                Some(v) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{}</td>",
                        pct(v.non_adaptive.tpr_at_5_fpr),
                        v.evasion_rate.map_or("–".into(), pct)
                    );
                }
                None => h.push_str("<td>–</td><td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// Success against the SNR floor for the SNR-bounded cells of one goal, undefended, as heard
/// by each verifier and through each defence, drawn to `file`; `false` (nothing drawn) when
/// there are fewer than two floors.
fn snr_chart(report: &Report, cells: &[Cell], file: &Path, title: &str) -> Result<bool> {
    let snr: Vec<&Cell> = cells.iter().filter(|c| c.snr_bound_db.is_some()).collect();
    if snr.len() < 2 {
        return Ok(false);
    }
    let x = |c: &Cell| c.snr_bound_db.unwrap_or(0.0) as f64;
    let mut series = vec![Series {
        name: "attacked model".into(),
        points: snr.iter().map(|c| (x(c), c.success_rate)).collect(),
    }];
    for v in heard_settings(cells) {
        series.push(Series {
            name: format!("heard by {v}"),
            points: snr
                .iter()
                .filter_map(|c| Some((x(c), *c.heard_success.get(&v)?)))
                .collect(),
        });
    }
    for d in report.settings.defenses.iter().filter(|d| *d != "none") {
        series.push(Series {
            name: format!("through {d}"),
            points: snr
                .iter()
                .filter_map(|c| {
                    let v = c.defenses.get(d)?;
                    let rate = v
                        .worst_case
                        .as_ref()
                        .unwrap_or(&v.non_adaptive)
                        .attack_success_rate;
                    Some((x(c), rate))
                })
                .collect(),
        });
    }
    let lo = snr.iter().map(|c| x(c)).fold(f64::INFINITY, f64::min);
    let hi = snr.iter().map(|c| x(c)).fold(f64::NEG_INFINITY, f64::max);
    line_chart(
        file,
        &Axes {
            title,
            x_label: "SNR floor (dB)",
            y_label: "attack success rate",
            x_range: (lo - 1.0, hi + 1.0),
            y_range: (0.0, 1.01),
        },
        &series,
    )?;
    Ok(true)
}

/// Write `scorecard.html` (and its charts) into `dir`; returns the page's path.
pub fn write_scorecard(report: &Report, dir: &Path) -> Result<PathBuf> {
    let s = &report.settings;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>advox scorecard</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}\
         th{{background:#eee}}td.l,th.l{{text-align:left}}img{{max-width:100%;border:1px solid #ddd;margin:6px 0}}</style>\
         </head><body><h1>advox {} scorecard</h1>\
         <p>How often an attacker who can add a perturbation to a spoken command makes the \
         assistant's recogniser hear a harmful command instead. {} attacked commands ({} carrier \
         recordings from <code>{}</code>, {} targets); attacked model {}; attacks {} with {} steps; \
         {}.</p>\
         <p><b>success</b>: the attacked model hears the target. <b>heard by</b>: an independent \
         recogniser, not written by advox, hears it in the written 16-bit file. <b>over the air</b>: \
         {}. <b>through</b> a defence: the better of the attack made on the bare model and the \
         attack made through the defence (an attacker who knows the defence); \"non-adaptive\" \
         where only the first ran. <b>flags</b>: share of the successful examples a detector \
         flags at the threshold that flags 5 % of the clean carriers; <b>evades</b>: share of the \
         attacks made to evade it that get the target through unflagged. Full tables: \
         <a href=\"report.html\">report.html</a>.</p>",
        esc(s.suite.as_deref().unwrap_or("evaluation")),
        report.examples,
        carriers(report),
        esc(&s.manifest),
        report.by_goal.len(),
        esc(&s.models.join(", ")),
        s.attacks
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", "),
        s.steps,
        if s.verifiers.is_empty() {
            "no independent recogniser (add --verify)".to_string()
        } else {
            format!("judged also by {}", esc(&s.verifiers.join(", ")))
        },
        esc(s.over_the_air.as_deref().unwrap_or("not measured (add --over-the-air)"))
    );
    h.push_str("<h2>All targets</h2>");
    table(&mut h, report, &report.cells);
    for (i, g) in report.by_goal.iter().enumerate() {
        let _ = write!(
            h,
            "<h2>{}</h2><p>{} carrier recordings.</p>",
            esc(&g.goal),
            g.examples
        );
        table(&mut h, report, &g.cells);
        let file = format!("scorecard_{i}.png");
        let title = format!("{}: success against the SNR floor", g.goal);
        if snr_chart(report, &g.cells, &dir.join(&file), &title)? {
            let _ = write!(h, "<img src=\"{file}\" alt=\"{}\">", esc(&title));
        }
    }
    h.push_str("</body></html>\n");
    let path = dir.join("scorecard.html");
    crate::atomic_file::write_bytes_atomic(&path, h.as_bytes())?;
    Ok(path)
}

fn carriers(report: &Report) -> usize {
    let mut inputs: Vec<&str> = report.records.iter().map(|r| r.input.as_str()).collect();
    inputs.sort_unstable();
    inputs.dedup();
    inputs.len()
}
