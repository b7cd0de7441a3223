//! What reaching a million fans costs through `deliver`, from public on-demand prices.
//!
//! Prices are US East (N. Virginia), as the AWS pricing pages gave them; the date each was read
//! is in `docs/benchmarks.md` beside the table. The floor is API Gateway's own charge: one
//! message per fan (a frame under 32 KB is one metered message), whatever the functions do.

use std::time::Duration;

/// On-demand prices in US dollars per unit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prices {
    /// Lambda duration, arm64, per GB-second (the first 7.5 billion GB-s a month).
    pub(crate) lambda_gb_second: f64,
    /// Lambda, per request.
    pub(crate) lambda_request: f64,
    /// DynamoDB on-demand, per read request unit.
    pub(crate) dynamodb_read: f64,
    /// DynamoDB on-demand, per write request unit.
    pub(crate) dynamodb_write: f64,
    /// SQS standard queue, per request (64 KB chunk; the first 100 billion a month).
    pub(crate) sqs_request: f64,
    /// API Gateway WebSocket API, per message (32 KB increment; the first billion a month).
    pub(crate) api_message: f64,
}

/// US East (N. Virginia).
pub(crate) const US_EAST_1: Prices = Prices {
    lambda_gb_second: 0.000_013_333_4,
    lambda_request: 0.20 / 1e6,
    dynamodb_read: 0.125 / 1e6,
    dynamodb_write: 0.625 / 1e6,
    sqs_request: 0.40 / 1e6,
    api_message: 1.00 / 1e6,
};

/// What one `deliver` invocation (one work item, one page) used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageUse {
    /// The function's memory size.
    pub(crate) memory_mb: u64,
    /// The invocation's duration (billed rounded up to the millisecond).
    pub(crate) duration: Duration,
    /// Fans the page reached.
    pub(crate) fans: u64,
    /// DynamoDB read request units it consumed.
    pub(crate) read_units: f64,
    /// DynamoDB write request units it consumed.
    pub(crate) write_units: f64,
    /// SQS requests that its work item costs (sent, received, leased, deleted).
    pub(crate) sqs_requests: u64,
}

/// Dollars per million fans reached, by service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cost {
    /// Lambda duration and requests.
    pub(crate) lambda: f64,
    /// DynamoDB reads and writes.
    pub(crate) dynamodb: f64,
    /// SQS requests.
    pub(crate) sqs: f64,
    /// API Gateway messages: the floor.
    pub(crate) api_gateway: f64,
}

impl Cost {
    /// Everything.
    pub(crate) fn total(&self) -> f64 {
        self.lambda + self.dynamodb + self.sqs + self.api_gateway
    }

    /// The total as a multiple of the floor.
    pub(crate) fn over_floor(&self) -> f64 {
        self.total() / self.api_gateway
    }
}

/// Milliseconds Lambda bills for `duration`: rounded up to the next whole millisecond.
pub(crate) fn billed_millis(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    marquee::domain::saturating_u64(nanos.div_ceil(1_000_000))
}

/// GB-seconds of one invocation (Lambda counts 1,024 MB to the GB).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn gb_seconds(memory_mb: u64, duration: Duration) -> f64 {
    memory_mb as f64 / 1024.0 * billed_millis(duration) as f64 / 1000.0
}

/// The cost of a million fans reached by pages like `page`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn per_million_fans(page: &PageUse, prices: &Prices) -> Cost {
    const FANS: f64 = 1e6;
    let pages = FANS / page.fans.max(1) as f64;
    Cost {
        lambda: pages
            * (gb_seconds(page.memory_mb, page.duration) * prices.lambda_gb_second
                + prices.lambda_request),
        dynamodb: pages
            * (page.read_units * prices.dynamodb_read + page.write_units * prices.dynamodb_write),
        sqs: pages * page.sqs_requests as f64 * prices.sqs_request,
        api_gateway: FANS * prices.api_message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn lambda_bills_whole_milliseconds_rounded_up() {
        assert_eq!(billed_millis(Duration::from_micros(1)), 1);
        assert_eq!(billed_millis(Duration::from_micros(1_000)), 1);
        assert_eq!(billed_millis(Duration::from_micros(1_001)), 2);
    }

    #[test]
    fn a_quarter_gb_for_two_seconds_is_half_a_gb_second() {
        assert!(close(gb_seconds(256, Duration::from_secs(2)), 0.5));
    }

    #[test]
    fn a_million_fans_in_pages_of_a_thousand_is_a_thousand_invocations() {
        let page = PageUse {
            memory_mb: 1024,
            duration: Duration::from_secs(1),
            fans: 1000,
            read_units: 10.0,
            write_units: 1.0,
            sqs_requests: 4,
        };
        let prices = Prices {
            lambda_gb_second: 1.0,
            lambda_request: 0.5,
            dynamodb_read: 0.01,
            dynamodb_write: 0.1,
            sqs_request: 1.0,
            api_message: 0.001,
        };
        let cost = per_million_fans(&page, &prices);
        assert!(close(cost.lambda, 1000.0 * (1.0 + 0.5)));
        assert!(close(cost.dynamodb, 1000.0 * (0.1 + 0.1)));
        assert!(close(cost.sqs, 4000.0));
        assert!(close(cost.api_gateway, 1000.0));
        assert!(close(
            cost.over_floor(),
            (1500.0 + 200.0 + 4000.0 + 1000.0) / 1000.0
        ));
    }

    #[test]
    fn the_floor_is_one_dollar_a_million_messages() {
        let page = PageUse {
            memory_mb: 128,
            duration: Duration::ZERO,
            fans: 1000,
            read_units: 0.0,
            write_units: 0.0,
            sqs_requests: 0,
        };
        assert!(close(per_million_fans(&page, &US_EAST_1).api_gateway, 1.0));
    }
}
