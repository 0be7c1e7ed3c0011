//! `report.html`: one self-contained page (inline CSS, PNGs beside it) with the tables of a
//! [`Report`], ROC curves per attack and bound, success against ε per attack, and the
//! spectrogram pictures of example pairs found under `examples/`.

use super::bound_name;
use super::report::Report;
use crate::plot::{line_chart, Axes, Series};
use crate::Result;
use std::fmt::Write;
use std::path::Path;

/// File stem of the pictures of one attack cell (its SNR floor names an SNR-bounded cell,
/// whose L∞ bound differs per example).
pub fn cell_stem(attack: &str, eps: Option<f32>, snr_bound_db: Option<f32>) -> String {
    match (snr_bound_db, eps) {
        (Some(s), _) => format!("{attack}_snr{s}"),
        (None, Some(e)) => format!("{attack}_eps{e}"),
        (None, None) => attack.to_string(),
    }
}

/// `name` (a defence or detector, `purify:lowpass-4000+lpc-16`) as part of a file name
/// (`purify_lowpass-4000_lpc-16`).
pub fn file_part(name: &str) -> String {
    name.replace([':', '+', '/'], "_")
}

/// A file of example `index` under `stem` (a [`cell_stem`], with what an adaptive attack
/// adapted to), relative to the report: `examples/0003_pgd_snr30.wav`, `….png`.
pub fn example_file(index: usize, stem: &str, ext: &str) -> String {
    format!("examples/{index:04}_{stem}.{ext}")
}

/// `s` escaped for HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A share as a whole percentage (`42 %`).
pub(crate) fn pct(v: f64) -> String {
    format!("{:.0} %", 100.0 * v)
}

/// Write the pictures and `report.html` into `dir`; returns the page's path.
pub fn write_html(report: &Report, dir: &Path) -> Result<std::path::PathBuf> {
    let mut h = String::new();
    let s = &report.settings;
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>advox evaluation</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}\
         th{{background:#eee}}td.l,th.l{{text-align:left}}img{{max-width:100%;border:1px solid #ddd;margin:6px 0}}</style>\
         </head><body><h1>advox evaluation</h1>\
         <p>Manifest <code>{}</code>: {} of {} examples{}. Models: {}. Attacks: {} at L∞ {:?} and SNR floors {:?} dB ({} steps); \
         defences: {}; detectors: {}; independent recognisers: {}. Beam {}, default goal {}, seed {}.</p>",
        esc(&s.manifest),
        report.examples,
        s.manifest_entries,
        report
            .shard
            .as_ref()
            .map_or(String::new(), |x| format!(" (shard {x})")),
        esc(&s.models.join(", ")),
        s.attacks.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
        s.epsilons,
        s.snr_bounds_db,
        s.steps,
        esc(&s.defenses.join(", ")),
        esc(&s.detectors.join(", ")),
        if s.verifiers.is_empty() {
            "none".to_string()
        } else {
            esc(&s.verifiers.join(", "))
        },
        s.beam,
        esc(&s.default_goal),
        s.seed
    );
    // Clean inputs.
    let _ = write!(
        h,
        "<h2>Clean inputs</h2><table><tr><th class=l>measure</th><th>value</th></tr>"
    );
    let opt = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.3}"));
    let _ = write!(
        h,
        "<tr><td class=l>WER against the references</td><td>{}</td></tr>\
         <tr><td class=l>CER against the references</td><td>{}</td></tr>\
         <tr><td class=l>WER over the air against the clean transcripts</td><td>{}</td></tr>",
        opt(report.clean.wer),
        opt(report.clean.cer),
        opt(report.clean.over_the_air_wer)
    );
    for (d, acc) in &report.clean.defense_accuracy {
        let _ = write!(
            h,
            "<tr><td class=l>transcript unchanged by {}</td><td>{}</td></tr>",
            esc(d),
            pct(*acc)
        );
    }
    h.push_str("</table>");
    // Attacks.
    let _ = write!(
        h,
        "<h2>Attacks</h2><p><b>heard by</b>: share of the written examples in which an \
         independent recogniser hears the goal met.</p><table><tr><th class=l>attack</th><th>bound</th><th>examples</th>\
         <th>success</th><th>over the air</th><th>WER</th><th>CER</th><th>SNR dB (mean)</th><th>dBx (mean)</th>\
         <th>s / example</th><th class=l>heard by</th></tr>"
    );
    let spread =
        |v: &Option<super::report::Spread>| v.map_or("–".into(), |x| format!("{:.1}", x.mean));
    for c in &report.cells {
        let _ = write!(
            h,
            "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td></tr>",
            c.attack,
            bound_name(c.eps, c.snr_bound_db),
            c.examples,
            pct(c.success_rate),
            c.over_the_air_success.map_or("–".into(), pct),
            c.adversarial_wer,
            c.adversarial_cer,
            spread(&c.snr_db),
            spread(&c.dbx),
            spread(&c.seconds),
            esc(&c
                .heard_success
                .iter()
                .map(|(v, x)| format!("{v}: {}", pct(*x)))
                .collect::<Vec<_>>()
                .join("; "))
        );
    }
    h.push_str("</table>");
    // Defences.
    if !s.defenses.is_empty() {
        let _ = write!(
            h,
            "<h2>Defences</h2><p>Robust accuracy: the defended transcript of the adversarial example \
             is the clean transcript. Attack success: the goal is met through the defence. \
             <b>Non-adaptive</b>: the attack was made on the undefended model and then passed \
             through the defence. <b>Adaptive</b>: the same attack made through the defence (true \
             gradients of linear transforms, straight-through or BPDA for the rest, EOT over \
             smoothing noise, every view of a vote); only this column says how robust a defence \
             is. – where it was not run (CW, <code>--no-adaptive</code>).</p>\
             <table><tr><th class=l rowspan=2>attack</th><th rowspan=2>bound</th><th class=l rowspan=2>defence</th>\
             <th colspan=3>non-adaptive</th><th colspan=3>adaptive</th><th rowspan=2>attack success, better of both</th><th class=l rowspan=2>adaptive gradient</th></tr>\
             <tr><th>robust accuracy</th><th>attack success</th><th>abstained</th>\
             <th>robust accuracy</th><th>attack success</th><th>abstained</th></tr>"
        );
        for c in &report.cells {
            for (d, v) in &c.defenses {
                let n = &v.non_adaptive;
                let (ra, asr, ab) = match &v.adaptive {
                    Some(a) => (
                        pct(a.robust_accuracy),
                        pct(a.attack_success_rate),
                        pct(a.abstain_rate),
                    ),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                let _ = write!(
                    h,
                    "<tr><td class=l>{}</td><td>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{ra}</td><td>{asr}</td><td>{ab}</td><td>{}</td><td class=l>{}</td></tr>",
                    c.attack,
                    bound_name(c.eps, c.snr_bound_db),
                    esc(d),
                    pct(n.robust_accuracy),
                    pct(n.attack_success_rate),
                    pct(n.abstain_rate),
                    v.worst_case
                        .as_ref()
                        .map_or("–".into(), |w| pct(w.attack_success_rate)),
                    esc(v.gradient.as_deref().unwrap_or(""))
                );
            }
        }
        h.push_str("</table>");
        for (d, curve) in &report.clean.certified_accuracy {
            if curve.is_empty() {
                continue;
            }
            let file = format!("certified_{}.png", file_part(d));
            let title = format!("{d}: certified accuracy on clean inputs");
            let mut points = Vec::new();
            for w in curve.windows(2) {
                points.push(w[0]);
                points.push((w[1].0, w[0].1));
            }
            if let Some(last) = curve.last() {
                points.push(*last);
                points.push((last.0 * 1.2 + 1e-4, 0.0));
            }
            let max_r = points.iter().map(|p| p.0).fold(0.0f64, f64::max);
            line_chart(
                &dir.join(&file),
                &Axes {
                    title: &title,
                    x_label: "L2 radius",
                    y_label: "certified accuracy",
                    x_range: (0.0, max_r.max(1e-4)),
                    y_range: (0.0, 1.01),
                },
                &[Series {
                    name: d.clone(),
                    points,
                }],
            )?;
            let _ = write!(h, "<img src=\"{file}\" alt=\"{}\">", esc(&title));
        }
    }
    // Detectors with ROC curves.
    if !s.detectors.is_empty() {
        let _ = write!(
            h,
            "<h2>Detectors</h2><p>Scores of the clean inputs against those of the successful \
             adversarial examples. <b>Adaptive</b>: the same attack made to evade the detector \
             (transcript-comparing detectors: every transcript it compares driven to the same \
             words); evasion: share of the examples where that attack met its goal unflagged at \
             the 5 %-FPR threshold.</p><table><tr><th class=l rowspan=2>attack</th><th rowspan=2>bound</th>\
             <th class=l rowspan=2>detector</th><th colspan=2>non-adaptive</th><th colspan=3>adaptive</th></tr>\
             <tr><th>ROC-AUC</th><th>TPR at 5 % FPR</th><th>ROC-AUC</th><th>TPR at 5 % FPR</th><th>evasion</th></tr>"
        );
        for c in &report.cells {
            for (d, v) in &c.detectors {
                let n = &v.non_adaptive;
                let (auc, tpr) = match &v.adaptive {
                    Some(a) => (format!("{:.3}", a.roc_auc), pct(a.tpr_at_5_fpr)),
                    None => ("–".into(), "–".into()),
                };
                let _ = write!(
                    h,
                    "<tr><td class=l>{}</td><td>{}</td><td class=l>{}</td><td>{:.3}</td><td>{}</td>\
                     <td>{auc}</td><td>{tpr}</td><td>{}</td></tr>",
                    c.attack,
                    bound_name(c.eps, c.snr_bound_db),
                    esc(d),
                    n.roc_auc,
                    pct(n.tpr_at_5_fpr),
                    v.evasion_rate.map_or("–".into(), pct)
                );
            }
        }
        h.push_str("</table>");
        for c in report.cells.iter().filter(|c| !c.detectors.is_empty()) {
            let file = format!("roc_{}.png", cell_stem(&c.attack, c.eps, c.snr_bound_db));
            let series: Vec<Series> = c
                .detectors
                .iter()
                .flat_map(|(d, v)| {
                    let mut s = vec![Series {
                        name: format!("{d} (AUC {:.2})", v.non_adaptive.roc_auc),
                        points: v.non_adaptive.roc.clone(),
                    }];
                    if let Some(a) = &v.adaptive {
                        s.push(Series {
                            name: format!("{d} adaptive (AUC {:.2})", a.roc_auc),
                            points: a.roc.clone(),
                        });
                    }
                    s
                })
                .collect();
            let title = format!("ROC: {} at {}", c.attack, bound_name(c.eps, c.snr_bound_db));
            line_chart(
                &dir.join(&file),
                &Axes {
                    title: &title,
                    x_label: "false-positive rate",
                    y_label: "true-positive rate",
                    x_range: (0.0, 1.0),
                    y_range: (0.0, 1.01),
                },
                &series,
            )?;
            let _ = write!(h, "<img src=\"{file}\" alt=\"{}\">", esc(&title));
        }
    }
    // Success against the bound: L∞ cells against ε, SNR-bounded cells against their floor.
    let mut charts: Vec<(&str, bool)> = Vec::new();
    for c in &report.cells {
        let kind = (c.attack.as_str(), c.snr_bound_db.is_some());
        if (c.eps.is_some() || c.snr_bound_db.is_some()) && !charts.contains(&kind) {
            charts.push(kind);
        }
    }
    if !charts.is_empty() {
        h.push_str("<h2>Success against the bound</h2>");
    }
    for (a, by_snr) in charts {
        let cells: Vec<_> = report
            .cells
            .iter()
            .filter(|c| {
                c.attack == a
                    && if by_snr {
                        c.snr_bound_db.is_some()
                    } else {
                        c.eps.is_some()
                    }
            })
            .collect();
        let x = |c: &super::report::Cell| {
            if by_snr {
                c.snr_bound_db.unwrap_or(0.0) as f64
            } else {
                c.eps.unwrap_or(0.0) as f64
            }
        };
        let point = |c: &&super::report::Cell, v: f64| (x(c), v);
        let mut series = vec![Series {
            name: "undefended".into(),
            points: cells.iter().map(|c| point(c, c.success_rate)).collect(),
        }];
        for d in s.defenses.iter().filter(|d| *d != "none") {
            series.push(Series {
                name: format!("{d} (non-adaptive)"),
                points: cells
                    .iter()
                    .filter_map(|c| {
                        c.defenses
                            .get(d)
                            .map(|v| point(c, v.non_adaptive.attack_success_rate))
                    })
                    .collect(),
            });
            let adaptive: Vec<(f64, f64)> = cells
                .iter()
                .filter_map(|c| {
                    let v = c.defenses.get(d)?.adaptive.as_ref()?;
                    Some(point(c, v.attack_success_rate))
                })
                .collect();
            if !adaptive.is_empty() {
                series.push(Series {
                    name: format!("{d} (adaptive)"),
                    points: adaptive,
                });
            }
        }
        let lo = cells.iter().map(|c| x(c)).fold(f64::INFINITY, f64::min);
        let hi = cells.iter().map(|c| x(c)).fold(0.0f64, f64::max);
        let (file, title, x_label, x_range) = if by_snr {
            (
                format!("success_{a}_snr.png"),
                format!("{a}: attack success against the SNR floor"),
                "SNR floor (dB)",
                (lo - 1.0, hi + 1.0),
            )
        } else {
            (
                format!("success_{a}.png"),
                format!("{a}: attack success against L∞"),
                "L∞ bound",
                (0.0, (hi * 1.1).max(1e-4)),
            )
        };
        line_chart(
            &dir.join(&file),
            &Axes {
                title: &title,
                x_label,
                y_label: "attack success rate",
                x_range,
                y_range: (0.0, 1.01),
            },
            &series,
        )?;
        let _ = write!(h, "<img src=\"{file}\" alt=\"{}\">", esc(&title));
    }
    // Examples.
    h.push_str("<h2>Examples</h2><table><tr><th class=l>#</th><th class=l>input</th><th class=l>goal</th>\
                <th class=l>clean</th><th class=l>attack</th><th class=l>adversarial transcript</th><th>success</th></tr>");
    for r in &report.records {
        for a in &r.attacks {
            let _ = write!(
                h,
                "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td>\
                 <td class=l>{} at {}</td><td class=l>{}</td><td>{}</td></tr>",
                r.index,
                esc(&r.input),
                esc(&r.goal),
                esc(&r.clean_transcript),
                a.attack,
                bound_name(a.eps, a.snr_bound_db),
                esc(&a.transcript),
                if a.success { "yes" } else { "no" }
            );
        }
    }
    h.push_str("</table>");
    for r in &report.records {
        for a in &r.attacks {
            let pic = example_file(r.index, &cell_stem(&a.attack, a.eps, a.snr_bound_db), "png");
            if dir.join(&pic).exists() {
                let _ = write!(
                    h,
                    "<h3>#{} {} — {} at {}</h3><img src=\"{pic}\" alt=\"spectrogram and perturbation\">",
                    r.index,
                    esc(&r.input),
                    a.attack,
                    bound_name(a.eps, a.snr_bound_db)
                );
            }
        }
    }
    h.push_str("</body></html>\n");
    let path = dir.join("report.html");
    crate::atomic_file::write_bytes_atomic(&path, h.as_bytes())?;
    Ok(path)
}
