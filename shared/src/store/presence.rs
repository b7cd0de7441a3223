//! What a room was last told of a user, and the rule that coalesces presence notices.
//!
//! A fan who subscribes and unsubscribes in a loop would otherwise make the server post a
//! `joined` or a `left` to every member of each small room per frame. Per (room, user), the
//! store keeps the last notice told and when ([`PresenceRecord`], `ARTIST#<key>`/
//! `PRESENCE#<user>`):
//!
//! - a notice equal to the last one told is never posted again;
//! - a subscribe or an unsubscribe ([`Pacing::Coalesced`]) is told at once when the last
//!   notice is older than the window (the leading edge), else one caller is asked to settle
//!   the room at the window's end ([`Told::Settle`]): it then tells what is true at that
//!   moment, if that differs from what was told, so a join and a leave within the window end
//!   as one `joined` and one `left`, and twenty frames as at most two notices a window;
//! - a connection that is gone ([`Pacing::Now`]) is told at once.
//!
//! Both stores apply the same two pure functions, [`decide`] and [`settle`]: the memory store
//! under its lock, DynamoDB as a conditional write on the record it read.

/// A presence notice: someone entered or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `joined`.
    Joined,
    /// `left`.
    Left,
}

impl Notice {
    /// `joined` or `left`, as stored and as the frame's `type`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Left => "left",
        }
    }

    /// The notice a stored name names.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Joined, Self::Left]
            .into_iter()
            .find(|n| n.as_str() == name)
    }
}

/// How a presence notice is paced, per user and room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Told now unless the room was last told the same (a connection that is gone: a
    /// `$disconnect`, a 410, a revocation, `marquee-admin disconnect`).
    Now,
    /// At most one notice per window (a subscribe or an unsubscribe): within it, one caller is
    /// asked to settle the room at the window's end.
    Coalesced {
        /// The window, in milliseconds.
        window_ms: i64,
    },
}

/// What to tell a room of a user, per what it was last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// Tell it now (recorded as told).
    Tell,
    /// Nothing: the room was last told the same, or another caller settles it.
    Skip,
    /// The room was told otherwise within the window: this caller settles it at `at_ms`,
    /// telling what is true then.
    Settle {
        /// When (epoch milliseconds).
        at_ms: i64,
    },
}

/// What a room was last told of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRecord {
    /// The notice.
    pub told: Notice,
    /// When (epoch milliseconds).
    pub told_ms: i64,
    /// When an armed settle is due, if one is.
    pub settle_ms: Option<i64>,
}

/// How long a record is kept after it was written (seconds): past it, the next notice is told.
pub const KEPT_SECONDS: i64 = 24 * 60 * 60;

/// The decision for `notice` given the `record` read, and the record to write (`None`: write
/// nothing).
#[must_use]
pub fn decide(
    record: Option<&PresenceRecord>,
    notice: Notice,
    pacing: Pacing,
    now_ms: i64,
) -> (Told, Option<PresenceRecord>) {
    let told = |settle_ms: Option<i64>| PresenceRecord {
        told: notice,
        told_ms: now_ms,
        settle_ms,
    };
    let Some(r) = record else {
        return (Told::Tell, Some(told(None)));
    };
    if r.told == notice {
        return (Told::Skip, None);
    }
    // A notice told disarms any settle: one still sleeping finds the room told the truth, or
    // tells it what changed since.
    let Pacing::Coalesced { window_ms } = pacing else {
        return (Told::Tell, Some(told(None)));
    };
    if now_ms.saturating_sub(r.told_ms) >= window_ms {
        return (Told::Tell, Some(told(None)));
    }
    // One settle per window. (Should its caller die before it, the room hears the next
    // notice after the window: presence frames are best effort.)
    if r.settle_ms.is_some() {
        return (Told::Skip, None);
    }
    let at_ms = r.told_ms.saturating_add(window_ms);
    (
        Told::Settle { at_ms },
        Some(PresenceRecord {
            settle_ms: Some(at_ms),
            ..*r
        }),
    )
}

/// The settle armed for `armed_ms`, at `now_ms`, `state` being what is true then: whether the
/// room must be told, and the record to write (the settle disarmed; `None`: write nothing).
/// A settle no longer armed does nothing: a notice told since is newer than what it knows.
#[must_use]
pub fn settle(
    record: Option<&PresenceRecord>,
    state: Notice,
    armed_ms: i64,
    now_ms: i64,
) -> (bool, Option<PresenceRecord>) {
    match record {
        Some(r) if r.settle_ms != Some(armed_ms) => (false, None),
        Some(r) if r.told == state => (
            false,
            Some(PresenceRecord {
                settle_ms: None,
                ..*r
            }),
        ),
        Some(_) => (
            true,
            Some(PresenceRecord {
                told: state,
                told_ms: now_ms,
                settle_ms: None,
            }),
        ),
        None => (false, None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const WINDOW: Pacing = Pacing::Coalesced { window_ms: 1000 };

    /// Runs `notices` (at their times) through `decide` and the settles it asks for (at their
    /// time, telling `truth` then); returns what was told, in order, with when.
    fn play(notices: &[(i64, Notice)]) -> Vec<(i64, Notice)> {
        let mut record: Option<PresenceRecord> = None;
        let mut told = Vec::new();
        let mut settles: Vec<i64> = Vec::new();
        let mut truth = None;
        let events: Vec<(i64, Notice)> = notices.to_vec();
        let mut i = 0;
        while i < events.len() || !settles.is_empty() {
            // The earliest of the next notice and the next settle.
            let next_settle = settles.iter().copied().min();
            let take_settle = match (events.get(i), next_settle) {
                (Some(&(t, _)), Some(at)) => at < t,
                (None, Some(_)) => true,
                _ => false,
            };
            if take_settle {
                let at = next_settle.unwrap();
                settles.retain(|&s| s != at);
                let state = truth.unwrap();
                let (tell, new) = settle(record.as_ref(), state, at, at);
                if new.is_some() {
                    record = new;
                }
                if tell {
                    told.push((at, state));
                }
                continue;
            }
            let (t, notice) = events[i];
            truth = Some(notice);
            match decide(record.as_ref(), notice, WINDOW, t) {
                (Told::Tell, new) => {
                    record = new;
                    told.push((t, notice));
                }
                (Told::Skip, new) => assert!(new.is_none()),
                (Told::Settle { at_ms }, new) => {
                    record = new;
                    settles.push(at_ms);
                }
            }
            i += 1;
        }
        told
    }

    #[test]
    fn twenty_frames_in_a_second_are_told_as_one_joined_and_the_final_state() {
        let frames: Vec<(i64, Notice)> = (0..20)
            .map(|i| {
                let notice = if i % 2 == 0 {
                    Notice::Joined
                } else {
                    Notice::Left
                };
                (i * 40, notice)
            })
            .collect();
        // Joined at 0, left at 40, ... left at 760: the room hears joined, then left at 1000.
        assert_eq!(
            play(&frames),
            vec![(0, Notice::Joined), (1000, Notice::Left)]
        );
    }

    #[test]
    fn a_burst_that_ends_where_it_began_is_told_once() {
        let frames = [
            (0, Notice::Joined),
            (100, Notice::Left),
            (200, Notice::Joined),
        ];
        assert_eq!(play(&frames), vec![(0, Notice::Joined)]);
    }

    #[test]
    fn notices_a_window_apart_are_each_told_at_once() {
        let frames = [
            (0, Notice::Joined),
            (1000, Notice::Left),
            (2500, Notice::Joined),
        ];
        assert_eq!(play(&frames), frames.to_vec());
    }

    #[test]
    fn a_notice_equal_to_the_last_told_is_never_told_again() {
        let first = decide(None, Notice::Left, Pacing::Now, 0);
        assert_eq!(first.0, Told::Tell);
        let again = decide(first.1.as_ref(), Notice::Left, Pacing::Now, 10);
        assert_eq!(again, (Told::Skip, None));
    }

    #[test]
    fn a_gone_connection_is_told_at_once_even_within_the_window() {
        let joined = decide(None, Notice::Joined, WINDOW, 0).1;
        let (told, record) = decide(joined.as_ref(), Notice::Left, Pacing::Now, 10);
        assert_eq!(told, Told::Tell);
        assert_eq!(record.unwrap().settle_ms, None);
    }

    #[test]
    fn a_settle_disarmed_by_a_newer_notice_does_nothing() {
        let joined = decide(None, Notice::Joined, WINDOW, 0).1;
        let (_, armed) = decide(joined.as_ref(), Notice::Left, WINDOW, 100);
        // A gone connection's `left` is told at once and disarms it.
        let (_, told) = decide(armed.as_ref(), Notice::Left, Pacing::Now, 300);
        // The settle, having read the room before, would say `joined`: it is stale.
        assert_eq!(
            settle(told.as_ref(), Notice::Joined, 1000, 1000),
            (false, None)
        );
        // Armed and still so, it tells what differs, once.
        let (tell, record) = settle(armed.as_ref(), Notice::Left, 1000, 1000);
        assert!(tell);
        assert_eq!(
            settle(record.as_ref(), Notice::Left, 1000, 1001),
            (false, None)
        );
    }

    #[test]
    fn one_caller_per_window_settles() {
        let joined = decide(None, Notice::Joined, WINDOW, 0).1;
        let (first, armed) = decide(joined.as_ref(), Notice::Left, WINDOW, 100);
        assert_eq!(first, Told::Settle { at_ms: 1000 });
        // Another leave within the window: someone settles already.
        assert_eq!(
            decide(armed.as_ref(), Notice::Left, WINDOW, 200),
            (Told::Skip, None)
        );
        // After the window a notice is told at once, and disarms the settle.
        let (told, record) = decide(armed.as_ref(), Notice::Left, WINDOW, 1001);
        assert_eq!(told, Told::Tell);
        assert_eq!(record.unwrap().settle_ms, None);
    }
}
