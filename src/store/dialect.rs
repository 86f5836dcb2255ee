//! What differs between the two databases in SQL that is otherwise written once: how a write
//! transaction begins, how a claim skips rows another replica holds, how the head of an ordered
//! queue is locked, and how a commit wakes the other replicas.

pub(super) struct Dialect {
    /// Starts a transaction that will write.
    pub begin_write: &'static str,
    /// Appended to the candidate query of a claim.
    pub skip_locked: &'static str,
    /// Appended to the head query of an ordered target's claim.
    pub lock_head: &'static str,
    /// Run inside a transaction that adds or revives deliveries; `None`: no other process listens.
    pub notify: Option<&'static str>,
    /// Taking and releasing the lock that lets one replica purge at a time; `None`: one writer
    /// anyway.
    pub purge_lock: Option<(&'static str, &'static str)>,
    /// The function giving where a text occurs in another (haystack, needle), 0 when it does not.
    pub text_position: &'static str,
    /// True when the inbox `body` (bytes) holds the text bound as `$2`.
    pub bytes_contain: &'static str,
}

/// The Postgres channel on which a commit that adds deliveries wakes every replica's worker.
pub(super) const DELIVERY_CHANNEL: &str = "tanyi_relay_deliveries";

pub(super) const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    // Not SKIP LOCKED: a second replica must wait for the head, never skip past it.
    lock_head: "FOR UPDATE",
    notify: Some("SELECT pg_notify('tanyi_relay_deliveries', '')"),
    // Keyed on the schema: relays that share a server but not a schema do not block each other.
    purge_lock: Some((
        "SELECT pg_try_advisory_lock(hashtext('tanyi-relay purge ' || current_schema()))",
        "SELECT pg_advisory_unlock(hashtext('tanyi-relay purge ' || current_schema()))",
    )),
    text_position: "strpos",
    bytes_contain: "position(convert_to($2, 'UTF8') in body) > 0",
};

/// SQLite has one writer at a time, so an `UPDATE … WHERE id IN (SELECT …)` is already atomic.
/// Write transactions take the write lock up front (IMMEDIATE): one that read first and then tried
/// to write while another connection writes would fail at once with SQLITE_BUSY instead of waiting.
pub(super) const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    skip_locked: "",
    lock_head: "",
    notify: None,
    purge_lock: None,
    text_position: "instr",
    bytes_contain: "instr(body, CAST($2 AS BLOB)) > 0",
};
