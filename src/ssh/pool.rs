//! One connection per node, made on first use and kept for later tasks and fires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Connection, LocalConnection, SshError};
use crate::config::Node;

#[derive(Default)]
pub struct Pool {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The node's connection, opened now if there is none yet.
    pub async fn connect(&self, node: &Node) -> Result<Arc<Connection>, SshError> {
        if let Some(found) = self.connections.lock().expect("pool lock").get(&node.name) {
            return Ok(Arc::clone(found));
        }
        let connection = if node.local {
            Arc::new(Connection::Local(LocalConnection::new(&node.name)))
        } else {
            return Err(SshError::Unsupported {
                node: node.name.clone(),
            });
        };
        self.connections
            .lock()
            .expect("pool lock")
            .insert(node.name.clone(), Arc::clone(&connection));
        Ok(connection)
    }
}
