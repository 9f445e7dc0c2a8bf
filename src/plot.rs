//! PNGs drawn with plotters: a training run's loss curve (training loss per step, validation
//! NT-Xent per epoch), and an evaluation's confusion matrix and accuracy per fold.

use plotters::prelude::*;
use std::path::Path;

/// `train`: (epoch as a fraction, loss) per step; `val`: (epoch, loss) per epoch.
pub fn loss_curve(path: &Path, title: &str, train: &[(f64, f64)], val: &[(f64, f64)]) -> Result<(), String> {
    let all = train.iter().chain(val).map(|p| p.1).filter(|y| y.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if !lo.is_finite() {
        return Err("no finite loss values to plot".into());
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let x_hi = train.iter().chain(val).map(|p| p.0).fold(1.0f64, f64::max);
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| err(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_hi, (lo - pad)..(hi + pad))
        .map_err(|x| err(&x))?;
    chart.configure_mesh().x_desc("epoch").y_desc("loss").draw().map_err(|x| err(&x))?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), BLUE.mix(0.35)))
        .map_err(|x| err(&x))?
        .label("training loss (per step)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let smooth = moving_average(train, (train.len() / 10).clamp(1, 25));
    chart.draw_series(LineSeries::new(smooth, BLUE.stroke_width(2))).map_err(|x| err(&x))?;
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
            .map_err(|x| err(&x))?
            .label("validation NT-Xent (per epoch)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(|x| err(&x))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| err(&x))?;
    root.present().map_err(|x| err(&x))
}

fn err(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}

/// Rows are true classes, columns predicted; each cell shows its count, shaded by the share of
/// its row.
pub fn confusion_matrix(path: &Path, title: &str, classes: &[String], m: &[Vec<u64>]) -> Result<(), String> {
    let k = classes.len();
    if k == 0 || m.len() != k {
        return Err(format!("a {}-row matrix for {k} classes", m.len()));
    }
    let root = BitMapBackend::new(path, (160 + 130 * k as u32, 120 + 110 * k as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| err(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(150)
        .build_cartesian_2d(-0.5..k as f64 - 0.5, -0.5..k as f64 - 0.5)
        .map_err(|x| err(&x))?;
    // Cells are centred on integer coordinates, so ticks land on them; row 0 is drawn on top.
    let name = |v: f64| if (v - v.round()).abs() < 1e-6 { classes.get(v.round() as usize).cloned().unwrap_or_default() } else { String::new() };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(k)
        .y_labels(k)
        .x_label_formatter(&|v| name(*v))
        .y_label_formatter(&|v| name(k as f64 - 1.0 - v))
        .draw()
        .map_err(|x| err(&x))?;
    for (t, row) in m.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &n) in row.iter().enumerate() {
            let share = if total == 0 { 0.0 } else { n as f64 / total as f64 };
            let (x, y) = (p as f64, (k - 1 - t) as f64);
            let shade = RGBColor(255 - (200.0 * share) as u8, 255 - (140.0 * share) as u8, 255);
            chart.draw_series(std::iter::once(Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], shade.filled()))).map_err(|x| err(&x))?;
            let label = format!("{n} ({:.0} %)", 100.0 * share);
            chart.draw_series(std::iter::once(Text::new(label, (x - 0.2, y + 0.05), ("sans-serif", 18)))).map_err(|x| err(&x))?;
        }
    }
    root.present().map_err(|x| err(&x))
}

/// (fold, accuracy) of every run: one dot per run, a bar at each fold's mean.
pub fn fold_accuracy(path: &Path, title: &str, runs: &[(usize, f64)]) -> Result<(), String> {
    let folds = runs.iter().map(|r| r.0 + 1).max().ok_or("no runs to plot")?;
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| err(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..folds as f64 - 0.5, 0.0..1.0)
        .map_err(|x| err(&x))?;
    chart
        .configure_mesh()
        .x_desc("fold")
        .y_desc("accuracy")
        .x_labels(folds)
        .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{}", v.round() as usize + 1) } else { String::new() })
        .draw()
        .map_err(|x| err(&x))?;
    for f in 0..folds {
        let acc: Vec<f64> = runs.iter().filter(|r| r.0 == f).map(|r| r.1).collect();
        if acc.is_empty() {
            continue;
        }
        let mean = acc.iter().sum::<f64>() / acc.len() as f64;
        let x = f as f64;
        chart.draw_series(std::iter::once(Rectangle::new([(x - 0.3, 0.0), (x + 0.3, mean)], BLUE.mix(0.3).filled()))).map_err(|x| err(&x))?;
        chart.draw_series(acc.iter().map(|&a| Circle::new((x, a), 4, BLUE.filled()))).map_err(|x| err(&x))?;
    }
    root.present().map_err(|x| err(&x))
}

fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.min(points.len()).max(1);
    points.windows(w).map(|win| (win[w - 1].0, win.iter().map(|p| p.1).sum::<f64>() / w as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let train: Vec<(f64, f64)> = (0..100).map(|i| (i as f64 / 10.0, 5.0 / (1.0 + i as f64))).collect();
        loss_curve(&path, "test", &train, &[(1.0, 2.0), (2.0, 1.0)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(loss_curve(&path, "none", &[], &[]).is_err());
        assert_eq!(moving_average(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)], 2), vec![(1.0, 2.0), (2.0, 4.0)]);
        let classes = vec!["a".to_string(), "b".to_string()];
        confusion_matrix(&dir.path().join("c.png"), "c", &classes, &[vec![3, 1], vec![0, 0]]).unwrap();
        assert!(confusion_matrix(&dir.path().join("c.png"), "c", &classes, &[vec![3, 1]]).is_err());
        fold_accuracy(&dir.path().join("f.png"), "f", &[(0, 0.5), (0, 0.7), (1, 1.0)]).unwrap();
        assert!(fold_accuracy(&dir.path().join("f.png"), "f", &[]).is_err());
    }
}
