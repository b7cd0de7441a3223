//! Which of Marquee's functions is running: one name per function, shared by the binary, the
//! template's resource and the handler.
//!
//! Each handler runs its work inside [`Function::run`], so that whatever it calls can ask
//! [`Function::current`]. The test build's IAM check uses it to hold every AWS request to the
//! policy of the function whose code made it (`marquee-tests`' `iam` module); nothing in
//! production reads it.

use std::future::Future;

/// One of the Lambda functions in `template.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// `$connect`: `marquee-connect`, `ConnectFunction`.
    Connect,
    /// `$disconnect`: `marquee-disconnect`, `DisconnectFunction`.
    Disconnect,
    /// subscribe, unsubscribe, ping, publish, `$default`: `marquee-subscribe`,
    /// `SubscribeFunction`.
    Subscribe,
    /// The EventBridge target: `marquee-notify`, `NotifyFunction`.
    Notify,
    /// The work queue's consumer: `marquee-deliver`, `DeliverFunction`. Lambda's SQS event
    /// source polls the queue with this function's role, so the local event source runs as it
    /// too.
    Deliver,
}

tokio::task_local! {
    static RUNNING: Function;
}

impl Function {
    /// Every function, in the order of the template.
    pub const ALL: [Self; 5] = [
        Self::Connect,
        Self::Disconnect,
        Self::Subscribe,
        Self::Notify,
        Self::Deliver,
    ];

    /// The short name: the crate under `functions/` and the metrics' `Function` dimension.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::Subscribe => "subscribe",
            Self::Notify => "notify",
            Self::Deliver => "deliver",
        }
    }

    /// The binary, and the function's name under `cargo lambda watch`.
    #[must_use]
    pub const fn binary(self) -> &'static str {
        match self {
            Self::Connect => "marquee-connect",
            Self::Disconnect => "marquee-disconnect",
            Self::Subscribe => "marquee-subscribe",
            Self::Notify => "marquee-notify",
            Self::Deliver => "marquee-deliver",
        }
    }

    /// The logical id of its `AWS::Serverless::Function` in `template.yaml`.
    #[must_use]
    pub const fn resource(self) -> &'static str {
        match self {
            Self::Connect => "ConnectFunction",
            Self::Disconnect => "DisconnectFunction",
            Self::Subscribe => "SubscribeFunction",
            Self::Notify => "NotifyFunction",
            Self::Deliver => "DeliverFunction",
        }
    }

    /// The function whose resource is `logical_id`, if any.
    #[must_use]
    pub fn from_resource(logical_id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.resource() == logical_id)
    }

    /// Runs `work` as this function: [`Function::current`] answers `self` inside it.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        RUNNING.scope(self, work).await
    }

    /// The function whose work is running on this task, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        RUNNING.try_with(|f| *f).ok()
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.resource())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_knows_which_function_runs_it_and_nothing_else_does() {
        assert_eq!(Function::current(), None);
        let inside = Function::Notify.run(async { Function::current() }).await;
        assert_eq!(inside, Some(Function::Notify));
        assert_eq!(Function::current(), None);
    }

    #[test]
    fn each_function_is_found_by_its_resource() {
        for function in Function::ALL {
            assert_eq!(Function::from_resource(function.resource()), Some(function));
            assert_eq!(function.binary(), format!("marquee-{}", function.name()));
        }
        assert_eq!(Function::from_resource("Table"), None);
    }
}
