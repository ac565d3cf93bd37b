//! Where the outbox relay stands in the outbox (ADR 016, third amendment).
//!
//! Reading the oldest pending events that are not already on their way (`id <> ALL(sent)`) walks,
//! at every read, through every event published and not yet marked, and checks each against the
//! whole list of them; planning that statement estimates each list element. At 500 session
//! ends/s (~2,500 events/s, ~600 on their way) that read was PostgreSQL's most expensive
//! statement: ~3 ms to execute and ~1.7 ms to plan, ~130 times a second.
//!
//! So the relay reads after a cursor: the events above the last id it read, plus the ids below it
//! that were missing when the cursor passed them (gaps). A gap is an id handed out to a
//! transaction that had not committed yet (it is read once it has), or to one that rolled back
//! (never). Ids are handed out in order but committed in any order, so a cursor alone would skip
//! a transaction that commits after a newer one; the gaps are what keeps it. Each aggregate keeps
//! its order as before: its next event is written only after its previous one committed, so it
//! has a higher id, and a read returns the gaps it finds and the events after the cursor in id
//! order.
//!
//! The cursor knows about the ids it passed, not about those handed out before the relay began.
//! A round therefore begins in sweep mode (the read above) and takes a horizon: the highest id
//! handed out so far and the transactions that then held the outbox open for writing (an insert
//! takes its `RowExclusiveLock` before it draws its id, and holds it to its end). Once those
//! transactions have ended, every id up to the horizon is final (committed or rolled back), and
//! after one more sweep that reads everything pending, the relay moves to the cursor: the ids
//! above the horizon that it has not read become gaps. Gaps whose writers have ended and that
//! were not found by a read after that are rolled back: they are dropped. (`CREATE INDEX
//! CONCURRENTLY` waits for a table's lockers in a similar way.)
//!
//! What this relies on, and what the reader does when it does not hold:
//! - ids come only from the column's sequence, drawn by inserts into `outbox`;
//! - the sequence hands them out in order: `CACHE 1` and a positive increment. Otherwise (a
//!   cache lets each connection draw from a range of its own) the reader only sweeps;
//! - the sequence never moves back. The reader compares it with its cursor every
//!   `SETTLE_EVERY` and sweeps again under a new horizon when it has;
//! - a writer holds its lock on `outbox` to its end. A prepared transaction (two-phase commit)
//!   keeps its locks, under a virtual transaction id of its own, until it is committed or rolled
//!   back, so it counts as running until then.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sqlx::PgConnection;

/// More gaps than this (a sequence moved by hand, a long transaction with many writers behind
/// it) and the relay sweeps again under a new horizon.
pub const MAX_GAPS: usize = 10_000;
/// How often the reader looks whether the writers it waits for have ended.
pub const WRITERS_CHECK: Duration = Duration::from_millis(20);
/// How often the reader takes a new horizon while it sweeps (a long transaction holds the one
/// before; the ids read above it are kept only since the last one).
pub const HORIZON_RENEWAL: Duration = Duration::from_secs(1);
/// How often the reader begins settling the gaps it holds.
pub const SETTLE_EVERY: Duration = Duration::from_millis(250);

/// The `pg_locks` rows of locks on this database's `outbox` (the writers are looked up and
/// waited for by the same rows).
macro_rules! outbox_locks {
    () => {
        "locktype = 'relation' AND relation = 'outbox'::regclass \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    };
}

/// The transactions holding the outbox open for writing at one moment (virtual transaction
/// ids), and when the reader last looked whether they are still running.
#[derive(Debug)]
pub struct Writers {
    vxids: Vec<String>,
    checked: Instant,
    gone: bool,
}

impl Writers {
    pub fn new(vxids: Vec<String>, now: Instant) -> Self {
        let gone = vxids.is_empty();
        Writers {
            vxids,
            checked: now,
            gone,
        }
    }

    /// Whether they had all ended when last looked (looking again every `WRITERS_CHECK`).
    pub async fn gone(&mut self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        if self.gone {
            return Ok(true);
        }
        if self.checked.elapsed() < WRITERS_CHECK {
            return Ok(false);
        }
        self.checked = Instant::now();
        // a writer holds its lock on the outbox to its end (a prepared transaction too, which
        // has no virtual transaction lock of its own any more)
        self.gone = sqlx::query_scalar(concat!(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE ",
            outbox_locks!(),
            " AND virtualtransaction = ANY($1))"
        ))
        .bind(&self.vxids)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
        Ok(self.gone)
    }
}

/// The transactions that hold the outbox open for writing now (`RowExclusiveLock`, taken by an
/// insert before it draws its id from the sequence), other than the caller's.
pub async fn writers(conn: &mut PgConnection) -> Result<Writers, sqlx::Error> {
    let vxids: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT DISTINCT virtualtransaction FROM pg_locks WHERE ",
        outbox_locks!(),
        " AND mode = 'RowExclusiveLock' AND granted AND pid IS DISTINCT FROM pg_backend_pid()"
    ))
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Writers::new(vxids, Instant::now()))
}

/// The outbox's sequence: the highest id handed out so far (0 before the first), and whether it
/// hands ids out in order (`CACHE 1`, a positive increment).
pub async fn sequence(conn: &mut PgConnection) -> Result<(i64, bool), sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(pg_sequence_last_value(s.seqrelid::regclass), 0), \
                s.seqcache = 1 AND s.seqincrement > 0 \
         FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence('outbox', 'id')::regclass",
    )
    .persistent(false)
    .fetch_one(&mut *conn)
    .await
}

/// A sweep's horizon: every id up to `id` is final once `writers` have ended.
#[derive(Debug)]
pub struct Horizon {
    pub id: i64,
    pub writers: Writers,
    /// The ids above `id` read since it was taken (they are not gaps).
    read_above: BTreeSet<i64>,
    pub taken: Instant,
}

impl Horizon {
    /// Takes it: the last id first, then the writers (a transaction that drew an id up to it has
    /// ended by then or is among them). `None` when the sequence does not hand ids out in order.
    pub async fn take(conn: &mut PgConnection) -> Result<Option<Horizon>, sqlx::Error> {
        let (id, in_order) = sequence(conn).await?;
        if !in_order {
            return Ok(None);
        }
        let writers = writers(conn).await?;
        Ok(Some(Horizon::new(id, writers)))
    }

    pub fn new(id: i64, writers: Writers) -> Self {
        Horizon {
            id,
            writers,
            read_above: BTreeSet::new(),
            taken: Instant::now(),
        }
    }

    /// Notes the ids a sweep read.
    pub fn read(&mut self, ids: impl IntoIterator<Item = i64>) {
        let above = self.id;
        self.read_above
            .extend(ids.into_iter().filter(|id| *id > above));
    }

    /// Whether it remembers so many ids read above it that a newer horizon should replace it (a
    /// long catch-up whose reads come back full).
    pub fn crowded(&self) -> bool {
        self.read_above.len() > 10 * MAX_GAPS
    }

    /// The cursor after a sweep that read everything pending, begun after the writers had
    /// ended: it stands at the highest id known, and the ids above the horizon it did not read
    /// are gaps. `None` when those would be more than `MAX_GAPS`.
    pub fn cursor(&self) -> Option<Cursor> {
        let at = self
            .read_above
            .last()
            .copied()
            .unwrap_or(self.id)
            .max(self.id);
        let span = usize::try_from(at.saturating_sub(self.id)).unwrap_or(usize::MAX);
        if span.saturating_sub(self.read_above.len()) > MAX_GAPS {
            return None;
        }
        let gaps = (self.id.saturating_add(1)..=at)
            .filter(|id| !self.read_above.contains(id))
            .collect();
        Some(Cursor {
            at,
            gaps,
            settling: None,
            settled: Instant::now(),
        })
    }
}

/// Reading after `at`, and the gaps below it.
#[derive(Debug)]
pub struct Cursor {
    at: i64,
    gaps: BTreeSet<i64>,
    /// Gaps to drop once these writers have ended and a read has not found them.
    settling: Option<(Writers, Vec<i64>)>,
    settled: Instant,
}

/// What the reader does next, by `Cursor::before_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Read,
    /// Read, then drop the gaps of the settling (`Cursor::settle`).
    ReadThenSettle,
    /// The sequence no longer fits the cursor: sweep under a new horizon.
    Sweep,
}

/// What a read found, for the cursor.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken {
    /// Rows above the cursor (the read's limit applies to them).
    pub after: usize,
}

impl Cursor {
    pub fn at(&self) -> i64 {
        self.at
    }

    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.iter().copied().collect()
    }

    pub fn gap_count(&self) -> usize {
        self.gaps.len()
    }

    /// Takes the ids a read returned (ascending): those at or below the cursor were gaps and are
    /// no more; those above it move it to the highest, and the ids it passed that the read did
    /// not return become gaps.
    pub fn take(&mut self, ids: &[i64]) -> Taken {
        let mut after = 0;
        let mut next = self.at.saturating_add(1);
        for &id in ids {
            if id <= self.at {
                self.gaps.remove(&id);
                continue;
            }
            after += 1;
            // ids of one read come in order; a duplicate or a step back adds nothing
            while next < id {
                self.gaps.insert(next);
                next = next.saturating_add(1);
            }
            next = next.max(id.saturating_add(1));
        }
        self.at = self.at.max(next.saturating_sub(1));
        Taken { after }
    }

    /// Whether it holds more gaps than it should (the relay sweeps again).
    pub fn overflowing(&self) -> bool {
        self.gaps.len() > MAX_GAPS
    }

    /// Before a read, every `SETTLE_EVERY`: checks the sequence (moved back, or no longer
    /// handing ids out in order: `Sweep`), and begins settling the gaps held by noting the
    /// writers that might still hold them. Tells whether the gaps of a settling begun earlier can
    /// be dropped after this read (`ReadThenSettle`: their writers have ended, so the read sees
    /// every one of them that committed).
    pub async fn before_read(&mut self, conn: &mut PgConnection) -> Result<Check, sqlx::Error> {
        if self.settling.is_none() && self.settled.elapsed() >= SETTLE_EVERY {
            self.settled = Instant::now();
            let (last, in_order) = sequence(conn).await?;
            if !in_order || last < self.at {
                return Ok(Check::Sweep);
            }
            if !self.gaps.is_empty() {
                // a gap held now was handed out before this look: its writer has ended or is
                // among these
                let held = self.gaps();
                self.settling = Some((writers(conn).await?, held));
            }
        }
        let settle = match self.settling.as_mut() {
            Some((writers, _)) => writers.gone(conn).await?,
            None => false,
        };
        Ok(if settle {
            Check::ReadThenSettle
        } else {
            Check::Read
        })
    }

    /// After a read begun once the settling's writers had ended: its gaps that the read did not
    /// find were rolled back.
    pub fn settle(&mut self) {
        if let Some((_, held)) = self.settling.take() {
            for id in held {
                self.gaps.remove(&id);
            }
        }
    }

    #[cfg(test)]
    fn with(at: i64, gaps: &[i64]) -> Cursor {
        Cursor {
            at,
            gaps: gaps.iter().copied().collect(),
            settling: None,
            settled: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_the_cursor_passes_without_reading_become_gaps_until_read() {
        let mut c = Cursor::with(10, &[]);
        assert_eq!(c.take(&[11, 12, 15, 16]), Taken { after: 4 });
        assert_eq!(c.at(), 16);
        assert_eq!(c.gaps(), vec![13, 14]);
        // a late commit of 14 is read with what follows; 13 stays a gap
        assert_eq!(c.take(&[14, 17]), Taken { after: 1 });
        assert_eq!(c.gaps(), vec![13]);
        assert_eq!(c.at(), 17);
        // nothing read: nothing moves
        assert_eq!(c.take(&[]), Taken { after: 0 });
        assert_eq!((c.at(), c.gaps()), (17, vec![13]));
    }

    #[test]
    fn the_cursor_after_a_sweep_makes_gaps_of_the_unread_ids_above_the_horizon_only() {
        let mut h = Horizon::new(100, Writers::new(vec![], Instant::now()));
        // ids at or below the horizon are final: read or not, they are no gaps
        h.read([40, 99, 101, 103, 106]);
        let Some(c) = h.cursor() else {
            panic!("a cursor within MAX_GAPS")
        };
        assert_eq!(c.at(), 106);
        assert_eq!(c.gaps(), vec![102, 104, 105]);
        // nothing read above it: the cursor stands at the horizon
        let h = Horizon::new(7, Writers::new(vec![], Instant::now()));
        let Some(c) = h.cursor() else {
            panic!("a cursor within MAX_GAPS")
        };
        assert_eq!((c.at(), c.gaps()), (7, vec![]));
    }

    #[test]
    fn too_many_gaps_send_the_relay_back_to_sweeping() {
        let mut h = Horizon::new(0, Writers::new(vec![], Instant::now()));
        h.read([MAX_GAPS as i64 + 2]);
        assert!(h.cursor().is_none());
        let mut c = Cursor::with(0, &[]);
        c.take(&[MAX_GAPS as i64 + 2]);
        assert!(c.overflowing());
    }

    #[test]
    fn settling_drops_only_the_gaps_noted_when_it_began() {
        let mut c = Cursor::with(20, &[12, 15]);
        c.settling = Some((Writers::new(vec![], Instant::now()), vec![12, 15]));
        c.take(&[22]);
        assert_eq!(c.gaps(), vec![12, 15, 21]);
        c.settle();
        assert_eq!(c.gaps(), vec![21]);
    }
}
