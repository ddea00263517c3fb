//! Host uids of the local runtime's sandboxes (server as root): handed out round-robin from
//! a cursor kept in the state directory, so a uid comes back only after every other slot has
//! been used, long after its last session and everything it owned are gone.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// Sessions get host uids from this base upward.
const UID_BASE: u32 = 200_000;
const UID_SLOTS: u32 = 60_000;

pub struct UidPool {
    state: Mutex<State>,
    /// Where the cursor survives restarts.
    cursor_file: PathBuf,
}

struct State {
    used: BTreeSet<u32>,
    next: u32,
}

impl UidPool {
    pub fn new(cursor_file: PathBuf) -> Self {
        let next = std::fs::read_to_string(&cursor_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .filter(|uid| (UID_BASE..UID_BASE + UID_SLOTS).contains(uid))
            .unwrap_or(UID_BASE);
        Self {
            state: Mutex::new(State {
                used: BTreeSet::new(),
                next,
            }),
            cursor_file,
        }
    }

    /// The next free uid after the last one handed out (wrapping), or `None` when every
    /// slot is taken.
    pub fn allocate(&self) -> std::io::Result<Option<u32>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = state.next - UID_BASE;
        let Some(uid) = (0..UID_SLOTS)
            .map(|step| UID_BASE + (start + step) % UID_SLOTS)
            .find(|uid| !state.used.contains(uid))
        else {
            return Ok(None);
        };
        state.used.insert(uid);
        state.next = UID_BASE + (uid - UID_BASE + 1) % UID_SLOTS;
        // Written before the uid is used: a crash never rewinds the cursor.
        let partial = self.cursor_file.with_extension("partial");
        std::fs::write(&partial, state.next.to_string())?;
        std::fs::rename(&partial, &self.cursor_file)?;
        Ok(Some(uid))
    }

    /// Marks `uid` as held by a session that survived a restart.
    pub fn claim(&self, uid: u32) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.used.insert(uid);
    }

    pub fn release(&self, uid: u32) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.used.remove(&uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_uid_is_not_handed_out_again_next_and_the_cursor_survives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = UidPool::new(dir.path().join("uid-next"));
        let first = pool.allocate().expect("io").expect("uid");
        pool.release(first);
        let second = pool.allocate().expect("io").expect("uid");
        assert_ne!(first, second, "a released uid came back at once");
        let reopened = UidPool::new(dir.path().join("uid-next"));
        reopened.claim(second);
        let third = reopened.allocate().expect("io").expect("uid");
        assert!(
            third > second,
            "the cursor was lost: {third} after {second}"
        );
    }
}
