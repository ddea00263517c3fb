//! Per-session start locks: a create and an agent restart of the same session never run at
//! once, while starts of different sessions never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

/// One async mutex per session that is being started; entries go when no one holds them.
#[derive(Default)]
pub struct StartLocks {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one session starts; dropping it frees the session's entry when unused.
pub struct StartGuard<'a> {
    locks: &'a StartLocks,
    id: Uuid,
    guard: Option<OwnedMutexGuard<()>>,
}

impl StartLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits only for another start of the same session.
    pub async fn lock(&self, id: Uuid) -> StartGuard<'_> {
        let lock = self.map().entry(id).or_default().clone();
        let guard = lock.lock_owned().await;
        StartGuard {
            locks: self,
            id,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Only the map and no guard or waiter holds it: nobody else is starting this session.
        if map
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn other_sessions_do_not_wait_and_entries_are_freed() {
        let locks = StartLocks::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let held = locks.lock(a).await;
        // A second session starts while the first is held.
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), locks.lock(b))
            .await
            .expect("another session's start does not wait");
        drop(other);
        assert_eq!(locks.len(), 1);
        // The same session waits until the first start is done.
        let same = locks.lock(a);
        tokio::pin!(same);
        assert!(futures::poll!(same.as_mut()).is_pending());
        drop(held);
        let again = same.await;
        drop(again);
        assert_eq!(locks.len(), 0);
    }
}
