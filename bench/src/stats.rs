//! Order statistics over measured samples, shared by the modes.

/// Nearest-rank percentile (`q` in 0 to 1) of sorted values: the smallest value with at least
/// `q` of the sample at or below it; 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&values, 0.50) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&values, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&[7.0], 0.99) - 7.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn the_extremes_are_the_first_and_last_values() {
        let values = [0.25, 0.5, 2.0];
        assert!((percentile(&values, 0.0) - 0.25).abs() < f64::EPSILON);
        assert!((percentile(&values, 1.0) - 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn p99_of_a_thousand_is_the_nine_hundred_and_ninetieth() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert!((percentile(&values, 0.99) - 990.0).abs() < f64::EPSILON);
    }
}
