//! The loss-curve PNG written at the end of a run (training loss per step, validation NT-Xent per
//! epoch), drawn with plotters.

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
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_hi, (lo - pad)..(hi + pad))
        .map_err(|x| e(&x))?;
    chart.configure_mesh().x_desc("epoch").y_desc("loss").draw().map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), BLUE.mix(0.35)))
        .map_err(|x| e(&x))?
        .label("training loss (per step)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let smooth = moving_average(train, (train.len() / 10).clamp(1, 25));
    chart.draw_series(LineSeries::new(smooth, BLUE.stroke_width(2))).map_err(|x| e(&x))?;
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("validation NT-Xent (per epoch)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(|x| e(&x))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
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
    }
}
