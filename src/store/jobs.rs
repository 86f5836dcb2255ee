//! Jobs and SMS, as the application reads them.

use super::{run, Store, StoreError, StoredJob, StoredSmsMessage};

impl Store {
    /// A job's stored completions (one per status the platform reported).
    pub async fn jobs(&self, account: &str, robot_call_job_id: i64) -> Result<Vec<StoredJob>, StoreError> {
        run!(self, read, jobs_sms::jobs(account, robot_call_job_id))
    }

    /// The SMS messages requested after a call, with their request's fields.
    pub async fn sms_messages(&self, account: &str, call_record_id: i64) -> Result<Vec<StoredSmsMessage>, StoreError> {
        run!(self, read, jobs_sms::sms_messages(account, call_record_id))
    }
}
