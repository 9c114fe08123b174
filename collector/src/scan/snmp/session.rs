//! One SNMP session to one device: requests with timeouts and retries, and bounded walks.
//!
//! snmp2's `AsyncSession` has no timeout, no retry and no walk, so this module adds them.
//! One request is in flight at a time (the session is `&mut`); every varbind is copied into
//! an owned [`Val`] before the next request. A reply with a stale request id means a late
//! answer is queued on the socket; the session is then rebuilt on a fresh socket so the stale
//! answers can never be mistaken for new ones.
//!
//! Walks (GETBULK for v2c/v3, GETNEXT for v1) fetch several columns side by side and stop on
//! any of: end of subtree, endOfMibView / noSuch*, an OID that does not increase, a value of a
//! type no varbind may carry, the walk deadline, the row bound or the byte bound. Whatever was
//! read before the stop is kept; the reason is reported so it can become a note.

use std::net::SocketAddr;

use snmp2::{AsyncSession, Oid};
use tokio::time::{Instant, timeout};
use tracing::debug;

use super::value::{OidVec, Val, copy_varbinds};
use super::{Credential, GapReason, Limits, SnmpError};

/// SNMP error-status values we act on.
const ERR_TOO_BIG: u32 = 1;
const ERR_NO_SUCH_NAME: u32 = 2;

/// Most varbinds asked for in one GETBULK, whatever the column count. Replies much larger
/// than a network's MTU are fragmented, and some agents (and firewalls) drop those; a walk
/// that times out shrinks this for the rest of the session (see `Client::bulk_cap`).
const MAX_VARBINDS_PER_REQUEST: u32 = 120;
/// The smallest budget a timeout can shrink it to.
const MIN_VARBINDS_PER_REQUEST: u32 = 8;

/// A reply, copied out of the receive buffer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub error_status: u32,
    pub error_index: u32,
    pub varbinds: Vec<(Option<OidVec>, Val)>,
}

enum Req<'a> {
    Get(&'a [OidVec]),
    Next(&'a OidVec),
    Bulk(&'a [OidVec], u32),
}

/// The outcome of walking one column (or subtree).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Column {
    /// `(index suffix after the column root, value)`, in agent order; NULL placeholders skipped.
    pub rows: Vec<(OidVec, Val)>,
    /// Why the walk ended early, if it did.
    pub stopped: Option<Stop>,
}

/// Why a walk ended early: a typed reason and the detail for the technician.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stop {
    pub reason: GapReason,
    /// e.g. "timeout", "OID did not increase", "walk stopped at 20000 rows".
    pub detail: String,
}

impl Stop {
    fn new(reason: GapReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    fn from_error(error: &SnmpError) -> Self {
        match error {
            SnmpError::Timeout => Self::new(GapReason::Timeout, "timeout"),
            other => Self::new(GapReason::Error, other.to_string()),
        }
    }
}

pub(crate) struct Client {
    session: AsyncSession,
    credential: Credential,
    target: SocketAddr,
    pub limits: Limits,
    /// Requests sent, for logs and benchmarks.
    pub requests: u64,
    /// Varbinds per GETBULK this device has shown it can answer.
    bulk_cap: u32,
}

impl Client {
    /// Opens a UDP session (and, for v3, discovers the engine id) without sending a query.
    pub async fn open(
        target: SocketAddr,
        credential: &Credential,
        limits: &Limits,
    ) -> Result<Client, SnmpError> {
        let deadline = Instant::now() + limits.timeout * (limits.retries + 1);
        let session = new_session(target, credential, limits, deadline).await?;
        Ok(Client {
            session,
            credential: credential.clone(),
            target,
            limits: limits.clone(),
            requests: 0,
            bulk_cap: MAX_VARBINDS_PER_REQUEST,
        })
    }

    pub fn is_v1(&self) -> bool {
        matches!(self.credential, Credential::V1 { .. })
    }

    async fn exchange(&mut self, req: Req<'_>, deadline: Instant) -> Result<Reply, SnmpError> {
        let oids: Vec<Oid<'static>> = match &req {
            Req::Get(list) | Req::Bulk(list, _) => {
                list.iter().map(|o| to_oid(o)).collect::<Result<_, _>>()?
            }
            Req::Next(one) => vec![to_oid(one)?],
        };
        let attempts = self.limits.retries + 1;
        let mut tries = 0u32;
        // Stale replies and v3 time-window updates are answered by resending; bound them too.
        let mut resends = 0u32;
        let mut last_error = SnmpError::Timeout;
        while tries < attempts && resends < 4 {
            let now = Instant::now();
            if now >= deadline {
                return Err(SnmpError::Timeout);
            }
            let wait = self.limits.timeout.min(deadline - now);
            self.requests += 1;
            let session = &mut self.session;
            let fut = async {
                let refs: Vec<&Oid<'_>> = oids.iter().collect();
                let pdu = match &req {
                    Req::Get(_) => session.get_many(&refs).await?,
                    Req::Next(_) => session.getnext(refs[0]).await?,
                    Req::Bulk(_, reps) => session.getbulk(&refs, 0, *reps).await?,
                };
                Ok::<Reply, snmp2::Error>(Reply {
                    error_status: pdu.error_status,
                    error_index: pdu.error_index,
                    varbinds: copy_varbinds(pdu),
                })
            };
            let result = timeout(wait, fut).await;
            tracing::trace!(target_addr = %self.target, oids = oids.len(), ok = ?result.as_ref().map(|r| r.as_ref().map(|p| p.varbinds.len()).map_err(ToString::to_string)), "SNMP exchange");
            match result {
                Ok(Ok(reply)) => return Ok(reply),
                Err(_elapsed) => {
                    tries += 1;
                    last_error = SnmpError::Timeout;
                }
                Ok(Err(snmp2::Error::RequestIdMismatch | snmp2::Error::CommunityMismatch)) => {
                    resends += 1;
                    debug!(target = %self.target, "Stale or foreign SNMP reply; reopening the session");
                    self.session =
                        new_session(self.target, &self.credential, &self.limits, deadline).await?;
                }
                Ok(Err(snmp2::Error::AuthUpdated)) => resends += 1,
                Ok(Err(snmp2::Error::AuthFailure(kind))) => {
                    return Err(SnmpError::Protocol(format!(
                        "SNMPv3 authentication failed: {kind:?}"
                    )));
                }
                Ok(Err(error)) => {
                    tries += 1;
                    last_error = SnmpError::Protocol(error.to_string());
                }
            }
        }
        Err(last_error)
    }

    /// GETs scalars; the result is aligned with `oids` (absent ones as `Val::NoSuchObject`).
    /// v1 agents fail the whole request on one missing name (noSuchName): that name is marked
    /// absent and the rest asked again. Other refusals (tooBig, genErr) fall back to one GET
    /// per name.
    pub async fn get(&mut self, oids: &[OidVec], deadline: Instant) -> Result<Vec<Val>, SnmpError> {
        let mut out = vec![Val::NoSuchObject; oids.len()];
        let mut pending: Vec<usize> = (0..oids.len()).collect();
        for _round in 0..oids.len().max(1) {
            if pending.is_empty() {
                break;
            }
            let asked: Vec<OidVec> = pending.iter().map(|&i| oids[i].clone()).collect();
            let reply = self.exchange(Req::Get(&asked), deadline).await?;
            if reply.error_status == ERR_NO_SUCH_NAME && reply.error_index >= 1 {
                let bad = (reply.error_index as usize - 1).min(pending.len() - 1);
                pending.remove(bad);
                continue;
            }
            if reply.error_status != 0 && pending.len() > 1 {
                // tooBig, genErr on one unknown name, ...: ask one name at a time instead.
                debug!(target = %self.target, status = reply.error_status, "GET refused; asking one OID at a time");
                for &slot in &pending {
                    let one = [oids[slot].clone()];
                    let reply = self.exchange(Req::Get(&one), deadline).await?;
                    if reply.error_status == 0
                        && let Some((Some(oid), val)) = reply.varbinds.into_iter().next()
                        && oid == oids[slot]
                    {
                        out[slot] = val;
                    }
                }
                break;
            }
            if reply.error_status != 0 {
                // A single name the agent refuses: absent.
                break;
            }
            for (slot, (oid, val)) in pending.iter().zip(reply.varbinds) {
                if oid.as_deref() == Some(oids[*slot].as_slice()) {
                    out[*slot] = val;
                }
            }
            break;
        }
        Ok(out)
    }

    /// The first OID after each root and its value (`None` past the end of the MIB or on an
    /// error), used to learn whether a MIB or a vendor subtree answers at all.
    pub async fn next(
        &mut self,
        roots: &[OidVec],
        deadline: Instant,
    ) -> Result<Vec<Option<(OidVec, Val)>>, SnmpError> {
        let mut out = Vec::with_capacity(roots.len());
        if self.is_v1() {
            for root in roots {
                let reply = self.exchange(Req::Next(root), deadline).await?;
                let first = reply.varbinds.into_iter().next();
                out.push(match first {
                    Some((Some(oid), val)) if reply.error_status == 0 && !val.is_absent() => {
                        Some((oid, val))
                    }
                    _ => None,
                });
            }
            return Ok(out);
        }
        let reply = self.exchange(Req::Bulk(roots, 1), deadline).await?;
        let mut vbs = reply.varbinds.into_iter();
        for _ in roots {
            out.push(match vbs.next() {
                Some((Some(oid), val)) if reply.error_status == 0 && !val.is_absent() => {
                    Some((oid, val))
                }
                _ => None,
            });
        }
        Ok(out)
    }

    /// Walks the given column roots side by side, within the walk deadline (capped by
    /// `device_deadline`) and the row and byte bounds, which apply to the whole call.
    pub async fn walk(&mut self, roots: &[OidVec], device_deadline: Instant) -> Vec<Column> {
        let deadline = device_deadline.min(Instant::now() + self.limits.walk_deadline);
        let mut state = WalkState::new(roots, self.limits.max_rows, self.limits.max_bytes);
        if self.is_v1() {
            for col in 0..roots.len() {
                while !state.done[col] {
                    if let Some(reason) = state.over_budget() {
                        state.stop_all(&reason);
                        break;
                    }
                    let last = state.last[col].clone();
                    match self.exchange(Req::Next(&last), deadline).await {
                        Ok(reply) if reply.error_status == ERR_NO_SUCH_NAME => {
                            state.done[col] = true
                        }
                        Ok(reply) if reply.error_status != 0 => {
                            state.malformed(
                                col,
                                &format!("agent error-status {}", reply.error_status),
                            );
                        }
                        Ok(reply) => {
                            if !state.absorb(&[col], reply.varbinds) {
                                state.malformed(col, "empty response");
                            }
                        }
                        Err(error) => state.stop(col, &Stop::from_error(&error)),
                    }
                }
            }
            return state.finish();
        }
        loop {
            let active: Vec<usize> = (0..roots.len()).filter(|&c| !state.done[c]).collect();
            if active.is_empty() {
                break;
            }
            if let Some(reason) = state.over_budget() {
                state.stop_all(&reason);
                break;
            }
            let width = u32::try_from(active.len()).unwrap_or(u32::MAX);
            let reps = self
                .limits
                .max_repetitions
                .clamp(1, (self.bulk_cap / width).max(1));
            let asked: Vec<OidVec> = active.iter().map(|&c| state.last[c].clone()).collect();
            match self.exchange(Req::Bulk(&asked, reps), deadline).await {
                Ok(reply) if reply.error_status == ERR_TOO_BIG && self.bulk_cap > width => {
                    self.bulk_cap /= 2;
                }
                // A silent drop of a large reply looks like a timeout: ask for less.
                Err(SnmpError::Timeout)
                    if reps > 1
                        && self.bulk_cap > MIN_VARBINDS_PER_REQUEST
                        && Instant::now() < deadline =>
                {
                    self.bulk_cap = (self.bulk_cap / 4).max(MIN_VARBINDS_PER_REQUEST);
                    debug!(target = %self.target, cap = self.bulk_cap, "GETBULK timed out; asking for fewer rows");
                }
                Ok(reply) if reply.error_status != 0 => {
                    state.stop_all(&Stop::new(
                        GapReason::Error,
                        format!("agent error-status {}", reply.error_status),
                    ));
                }
                Ok(reply) => {
                    if !state.absorb(&active, reply.varbinds) {
                        state.stop_all(&Stop::new(GapReason::Error, "no progress"));
                    }
                }
                Err(error) => state.stop_all(&Stop::from_error(&error)),
            }
        }
        state.finish()
    }
}

/// The bookkeeping of one walk, separate from the network so it can be fuzzed.
pub(crate) struct WalkState {
    roots: Vec<OidVec>,
    last: Vec<OidVec>,
    done: Vec<bool>,
    columns: Vec<Column>,
    rows: usize,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
}

impl WalkState {
    pub fn new(roots: &[OidVec], max_rows: usize, max_bytes: usize) -> WalkState {
        WalkState {
            roots: roots.to_vec(),
            last: roots.to_vec(),
            done: vec![false; roots.len()],
            columns: vec![Column::default(); roots.len()],
            rows: 0,
            bytes: 0,
            max_rows,
            max_bytes,
        }
    }

    fn over_budget(&self) -> Option<Stop> {
        if self.rows >= self.max_rows {
            Some(Stop::new(
                GapReason::Limit,
                format!("walk stopped at {} rows", self.rows),
            ))
        } else if self.bytes >= self.max_bytes {
            Some(Stop::new(
                GapReason::Limit,
                format!("walk stopped at {} bytes", self.bytes),
            ))
        } else {
            None
        }
    }

    fn stop(&mut self, col: usize, stop: &Stop) {
        if !self.done[col] {
            self.done[col] = true;
            self.columns[col].stopped = Some(stop.clone());
        }
    }

    /// A malformed reply for one column.
    fn malformed(&mut self, col: usize, detail: &str) {
        self.stop(col, &Stop::new(GapReason::Error, detail));
    }

    fn stop_all(&mut self, stop: &Stop) {
        for col in 0..self.done.len() {
            self.stop(col, stop);
        }
    }

    /// Takes in one reply's varbinds (row-major over `active`). Returns whether any column
    /// moved forward or finished.
    pub fn absorb(&mut self, active: &[usize], varbinds: Vec<(Option<OidVec>, Val)>) -> bool {
        if active.is_empty() {
            return false;
        }
        let mut progressed = false;
        for (i, (oid, val)) in varbinds.into_iter().enumerate() {
            let col = active[i % active.len()];
            if self.done[col] {
                continue;
            }
            if self.rows >= self.max_rows || self.bytes >= self.max_bytes {
                break;
            }
            progressed = true;
            let Some(oid) = oid else {
                self.malformed(col, "malformed OID in reply");
                continue;
            };
            if matches!(
                val,
                Val::EndOfMibView | Val::NoSuchObject | Val::NoSuchInstance
            ) {
                self.done[col] = true;
                continue;
            }
            if !oid.starts_with(&self.roots[col]) || oid.len() == self.roots[col].len() {
                self.done[col] = true;
                continue;
            }
            if oid <= self.last[col] {
                self.malformed(col, "OID did not increase");
                continue;
            }
            if val == Val::Unexpected {
                self.malformed(col, "value of a wrong type");
                continue;
            }
            self.bytes += oid.len() * 8 + val.approx_bytes();
            self.rows += 1;
            let suffix = oid[self.roots[col].len()..].to_vec();
            self.last[col] = oid;
            if val != Val::Null {
                self.columns[col].rows.push((suffix, val));
            }
        }
        progressed
    }

    pub fn finish(self) -> Vec<Column> {
        self.columns
    }
}

fn to_oid(arcs: &[u64]) -> Result<Oid<'static>, SnmpError> {
    Oid::from(arcs).map_err(|e| SnmpError::Protocol(format!("cannot encode OID {arcs:?}: {e:?}")))
}

async fn new_session(
    target: SocketAddr,
    credential: &Credential,
    limits: &Limits,
    deadline: Instant,
) -> Result<AsyncSession, SnmpError> {
    let start_id = rand::random::<i32>() & 0x3fff_ffff;
    match credential {
        Credential::V1 { community } => {
            AsyncSession::new_v1(target, community.as_bytes(), start_id)
                .await
                .map_err(SnmpError::Io)
        }
        Credential::V2c { community } => {
            AsyncSession::new_v2c(target, community.as_bytes(), start_id)
                .await
                .map_err(SnmpError::Io)
        }
        Credential::V3 { .. } => {
            let security = super::v3_security(credential)?;
            let mut session = AsyncSession::new_v3(target, start_id, security)
                .await
                .map_err(SnmpError::Io)?;
            // Engine discovery: one round trip, with the same timeout and retries as queries.
            for _ in 0..=limits.retries {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match timeout(limits.timeout.min(deadline - now), session.init()).await {
                    Ok(Ok(())) => return Ok(session),
                    Ok(Err(snmp2::Error::AuthFailure(kind))) => {
                        return Err(SnmpError::Protocol(format!(
                            "SNMPv3 engine discovery failed: {kind:?}"
                        )));
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
            }
            Err(SnmpError::Timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::snmp::value::tests::any_val;
    use proptest::prelude::*;

    const ROOT: [u64; 4] = [1, 3, 6, 9];

    fn vb(suffix: &[u64], val: Val) -> (Option<OidVec>, Val) {
        let mut oid = ROOT.to_vec();
        oid.extend_from_slice(suffix);
        (Some(oid), val)
    }

    #[test]
    fn walk_stops_on_non_increasing_oid() {
        let mut st = WalkState::new(&[ROOT.to_vec()], 100, 1 << 20);
        assert!(st.absorb(
            &[0],
            vec![
                vb(&[1], Val::Int(1)),
                vb(&[2], Val::Int(2)),
                vb(&[2], Val::Int(3))
            ]
        ));
        let cols = st.finish();
        assert_eq!(cols[0].rows.len(), 2);
        assert_eq!(
            cols[0].stopped.as_ref().map(|s| s.detail.as_str()),
            Some("OID did not increase")
        );
    }

    #[test]
    fn walk_ends_quietly_past_the_subtree_and_skips_nulls() {
        let mut st = WalkState::new(&[ROOT.to_vec()], 100, 1 << 20);
        st.absorb(
            &[0],
            vec![
                vb(&[1], Val::Null),
                vb(&[2], Val::Int(2)),
                (Some(vec![1, 3, 6, 10]), Val::Int(0)),
            ],
        );
        let cols = st.finish();
        assert_eq!(cols[0].rows, vec![(vec![2], Val::Int(2))]);
        assert_eq!(cols[0].stopped, None);
    }

    #[test]
    fn walk_respects_row_and_type_bounds() {
        let mut st = WalkState::new(&[ROOT.to_vec()], 3, 1 << 20);
        st.absorb(&[0], (1..10).map(|i| vb(&[i], Val::Int(0))).collect());
        assert_eq!(
            st.over_budget().map(|s| s.detail),
            Some("walk stopped at 3 rows".to_owned())
        );
        let mut st = WalkState::new(&[ROOT.to_vec()], 100, 1 << 20);
        st.absorb(&[0], vec![vb(&[1], Val::Unexpected)]);
        assert_eq!(
            st.finish()[0].stopped.as_ref().map(|s| s.detail.as_str()),
            Some("value of a wrong type")
        );
    }

    #[test]
    fn interleaved_columns_are_split() {
        let a = vec![1, 3, 6, 9, 1];
        let b = vec![1, 3, 6, 9, 2];
        let mut st = WalkState::new(&[a.clone(), b.clone()], 100, 1 << 20);
        let row = |root: &OidVec, i: u64, v: i64| {
            let mut o = root.clone();
            o.push(i);
            (Some(o), Val::Int(v))
        };
        st.absorb(
            &[0, 1],
            vec![
                row(&a, 1, 10),
                row(&b, 1, 20),
                row(&a, 2, 11),
                row(&b, 2, 21),
            ],
        );
        let cols = st.finish();
        assert_eq!(
            cols[0].rows,
            vec![(vec![1], Val::Int(10)), (vec![2], Val::Int(11))]
        );
        assert_eq!(
            cols[1].rows,
            vec![(vec![1], Val::Int(20)), (vec![2], Val::Int(21))]
        );
    }

    proptest! {
        #[test]
        fn walk_state_never_panics_and_stays_bounded(
            replies in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::option::of(proptest::collection::vec(0u64..6, 0..8)), any_val()), 0..30),
                0..10),
            cols in 1usize..4,
        ) {
            let roots: Vec<OidVec> = (0..cols as u64).map(|c| vec![1, 3, c]).collect();
            let mut st = WalkState::new(&roots, 50, 4096);
            for reply in replies {
                let active: Vec<usize> = (0..cols).filter(|&c| !st.done[c]).collect();
                let vbs = reply.into_iter().map(|(o, v)| (o.map(|mut o| { let mut full = vec![1, 3]; full.append(&mut o); full }), v)).collect();
                st.absorb(&active, vbs);
            }
            let total: usize = st.finish().iter().map(|c| c.rows.len()).sum();
            prop_assert!(total <= 50);
        }
    }
}
