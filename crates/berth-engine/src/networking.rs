//! `docker network connect` and `disconnect`: a container's networks after create.
//!
//! A stopped container only has its configuration changed (it joins at its next start);
//! a running one also gets the interface added or removed live, through berth-net.

use std::sync::Arc;

use serde_json::Value;

use crate::engine::Engine;
use crate::error::{EngineError, ErrorKind, Result};

impl Engine {
    /// `POST /networks/{id}/connect`.
    pub async fn network_connect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        endpoint: Option<Value>,
    ) -> Result<()> {
        let n = self.net.get(network).map_err(EngineError::net)?;
        let h = self.container(container)?;
        let _op = h.op.lock().await;
        let c = h.get();
        let mode = c.network_mode().to_owned();
        if mode == "host" || n.driver == "host" {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if mode == "none" || mode.starts_with("container:") || n.driver != "bridge" {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "container {} is in network mode {mode}: it cannot be connected to network {} as well",
                    c.name, n.name
                ),
            ));
        }
        if c.network_names().iter().any(|x| *x == n.name || *x == n.id) {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "endpoint with name {} already exists in network {}",
                    c.name, n.name
                ),
            ));
        }
        let ep = endpoint.filter(|v| !v.is_null());
        let mut attachment = None;
        if c.is_running() && c.network.is_some() {
            let ip = match ep
                .as_ref()
                .and_then(|v| v.pointer("/IPAMConfig/IPv4Address"))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
            {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| EngineError::invalid(format!("invalid IPv4 address {s}")))?,
                ),
                None => None,
            };
            let aliases = ep
                .as_ref()
                .and_then(|v| v.get("Aliases"))
                .and_then(|a| serde_json::from_value::<Vec<String>>(a.clone()).ok())
                .unwrap_or_default();
            let req = berth_net::EndpointRequest {
                network: n.id.clone(),
                ip,
                aliases,
                mac: None,
            };
            let (net, id) = (self.net.clone(), c.id.clone());
            let att = tokio::task::spawn_blocking(move || net.connect(&id, &req))
                .await
                .map_err(|e| EngineError::internal(e.to_string()))?
                .map_err(EngineError::net)?;
            attachment = Some(att);
        }
        h.update(&self.containers_dir(), |c| {
            c.networking_config
                .endpoints_config
                .get_or_insert_with(Default::default)
                .insert(n.name.clone(), ep.clone());
            if let Some(a) = attachment {
                c.network = Some(a);
            }
        })?;
        self.emit_network_event("connect", &n, &c.id);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
    ) -> Result<()> {
        let n = self.net.get(network).map_err(EngineError::net)?;
        let h = self.container(container)?;
        let _op = h.op.lock().await;
        let c = h.get();
        if n.driver == "host" || c.network_mode() == "host" {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        let names = c.network_names();
        if !names.iter().any(|x| *x == n.name || *x == n.id) {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!(
                    "container {} is not connected to network {}",
                    c.name, n.name
                ),
            ));
        }
        let mut attachment = None;
        if c.is_running() && c.network.is_some() {
            let (net, id, nid) = (self.net.clone(), c.id.clone(), n.id.clone());
            let att = tokio::task::spawn_blocking(move || net.disconnect(&id, &nid))
                .await
                .map_err(|e| EngineError::internal(e.to_string()))?
                .map_err(EngineError::net)?;
            attachment = Some(att);
        }
        h.update(&self.containers_dir(), |c| {
            if let Some(m) = c.networking_config.endpoints_config.as_mut() {
                m.remove(&n.name);
                m.remove(&n.id);
            }
            // Leaving the network of its mode: the next remaining one takes its place.
            let mode = c.network_mode().to_owned();
            if mode == n.name || mode == n.id {
                let next = c
                    .networking_config
                    .endpoints_config
                    .iter()
                    .flat_map(|m| m.keys())
                    .find(|k| *k != "default")
                    .cloned();
                c.host_config.network_mode = next.unwrap_or_else(|| "none".into());
            }
            if let Some(a) = attachment {
                c.network = Some(a);
            }
        })?;
        self.emit_network_event("disconnect", &n, &c.id);
        Ok(())
    }

    fn emit_network_event(&self, action: &str, n: &berth_net::Network, container: &str) {
        self.events.emit(
            "network",
            action,
            &n.id,
            [
                ("container".to_string(), container.to_string()),
                ("name".to_string(), n.name.clone()),
                ("type".to_string(), n.driver.clone()),
            ]
            .into(),
        );
    }
}
