//! Several processes, usually on several machines, training as one: data parallelism
//! across nodes on burn-collective. Every node runs the same command with its own rank,
//! rolls out its share of each step's batch and sums with the others, through
//! burn-collective's all-reduce, the loss denominator, the step's figures and the
//! gradients. Rank 0 also serves burn-collective's orchestrator.
//!
//! burn-collective's operations have no timeout and cannot be cancelled: a node that
//! died would leave the others blocked for ever. Each collective call therefore runs
//! under a watchdog that, past the timeout, prints which ranks did not answer and ends
//! the process (the last complete checkpoint is intact; `--resume` continues from it).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;
use burn_collective::{
    all_reduce, register, AllReduceStrategy, CollectiveConfig, CollectiveError, PeerId,
    ReduceOperation,
};

use crate::error::TrainError;

/// The exit status of a node that lost its peers.
pub const EXIT_PEER_LOST: i32 = 75;

/// Where and how this process joins a multi-node run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Processes in the run.
    pub nodes: usize,
    /// This process's rank, `0..nodes`; rank 0 serves the coordinator, writes the
    /// metrics log of record and exports the model.
    pub rank: usize,
    /// `host:port` of burn-collective's orchestrator, served by rank 0.
    pub coordinator: String,
    /// `host:port` where this node serves its tensors to the others; it listens on that
    /// host's interface only.
    pub address: String,
    /// How long a collective operation may wait for the other nodes.
    pub timeout: Duration,
}

impl NodeSettings {
    /// Checks the ranks and resolves both addresses.
    fn resolve(&self) -> Result<(SocketAddr, SocketAddr), TrainError> {
        let bad = |message: String| TrainError::Data(message);
        if self.nodes < 2 || self.rank >= self.nodes {
            return Err(bad(format!(
                "node rank {} of {} nodes: a multi-node run needs at least 2 nodes and a rank below their number",
                self.rank, self.nodes
            )));
        }
        let resolve = |what: &str, address: &str| {
            address.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
                bad(format!(
                    "{what} `{address}` is not a reachable host:port (e.g. 10.0.0.1:29500)"
                ))
            })
        };
        let coordinator = resolve("the coordinator address", &self.coordinator)?;
        let address = resolve("the node address", &self.address)?;
        if self.rank == 0 && coordinator.ip() != address.ip() {
            return Err(bad(format!(
                "rank 0 serves the coordinator, so its host ({}) must be rank 0's node address host ({})",
                coordinator.ip(),
                address.ip()
            )));
        }
        Ok((coordinator, address))
    }
}

/// This process's membership of a multi-node run.
#[derive(Debug)]
pub struct NodeGroup {
    settings: NodeSettings,
}

impl NodeGroup {
    /// Joins the run: rank 0 starts the orchestrator, every node registers and waits for
    /// all the others (at most the timeout). Servers listen on the node address's
    /// interface only.
    pub fn join<B: Backend>(
        settings: NodeSettings,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let (coordinator, address) = settings.resolve()?;
        listen_on(address.ip())?;
        if settings.rank == 0 {
            start_orchestrator(coordinator.port())?;
        }
        let ws = |a: SocketAddr| format!("ws://{a}").parse().expect("any string is an address");
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(settings.nodes as u32)
            .with_global_address(ws(coordinator))
            .with_node_address(ws(address))
            .with_data_service_port(address.port())
            // Ring, burn-collective's default, refuses tensors with fewer elements than
            // there are nodes (`RingReduceImpossible`): the step's figures are 1–7 numbers.
            .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
        let group = Self { settings };
        let peer = group.peer();
        group
            .within_deadline("joining the run", || register::<B>(peer, device.clone(), config))
            .map_err(|e| {
                TrainError::Data(group.failure(&format!("joining the run failed: {e:?}")))
            })?;
        Ok(group)
    }

    /// This node's rank.
    pub fn rank(&self) -> usize {
        self.settings.rank
    }

    /// Processes in the run.
    pub fn nodes(&self) -> usize {
        self.settings.nodes
    }

    fn peer(&self) -> PeerId {
        PeerId(self.settings.rank as u32)
    }

    /// `values` summed over all nodes (`what` names them in errors).
    pub fn sum<B: Backend>(&self, what: &str, values: &[f64], device: &B::Device) -> Vec<f64> {
        let data = TensorData::new(values.iter().map(|&v| v as f32).collect(), [values.len()]);
        let tensor = Tensor::<B, 1>::from_data(data, device).into_primitive().tensor();
        let summed = self
            .within_deadline(what, || all_reduce::<B>(self.peer(), tensor, ReduceOperation::Sum))
            .unwrap_or_else(|e| self.lost(what, e));
        let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed));
        summed.into_data().iter::<f32>().map(f64::from).collect()
    }

    /// The gradients of `model` summed over all nodes, as one flat tensor in the
    /// module's visiting order (the same on every node; parameter ids are not, being
    /// drawn at random when a model is built), with zeros for any parameter without a
    /// gradient (a share without loss has none at all). One all-reduce per step, not
    /// one per parameter.
    pub fn sum_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        step: usize,
        model: &M,
        grads: GradientsParams,
    ) -> GradientsParams {
        let mut grads = grads;
        let mut flatten = Flatten::<B> { grads: &mut grads, parts: vec![] };
        model.visit(&mut flatten);
        let flat = Tensor::cat(flatten.parts, 0);
        let device = flat.device();
        let what = format!("step {step}'s gradients");
        let summed = self
            .within_deadline(&what, || {
                let flat = flat.into_primitive().tensor();
                all_reduce::<B::InnerBackend>(self.peer(), flat, ReduceOperation::Sum)
            })
            .unwrap_or_else(|e| self.lost(&what, e));
        let flat = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(summed));
        debug_assert_eq!(flat.device(), device);
        model.visit(&mut Unflatten::<B> { grads: &mut grads, flat, offset: 0 });
        grads
    }

    /// The newest checkpoint epoch (≤ `epochs`) that every node holds complete, given
    /// which of them this node holds (`holds(epoch)`): 0 when there is none.
    pub fn common_checkpoint<B: Backend>(
        &self,
        epochs: usize,
        holds: impl Fn(usize) -> bool,
        device: &B::Device,
    ) -> usize {
        let held: Vec<f64> = (1..=epochs).map(|e| f64::from(u8::from(holds(e)))).collect();
        let counts = self.sum::<B>("the checkpoints each node holds", &held, device);
        let everywhere = |e: &usize| counts[e - 1] as usize == self.settings.nodes;
        (1..=epochs).rev().find(everywhere).unwrap_or(0)
    }

    /// Runs `operation`, or ends the process if it has not returned within the timeout.
    fn within_deadline<T>(&self, what: &str, operation: impl FnOnce() -> T) -> T {
        let (done, wait) = mpsc::channel::<()>();
        let timeout = self.settings.timeout;
        let message = self.failure(&format!(
            "no answer within {} s while {what}: {} died or never joined",
            timeout.as_secs_f64(),
            self.others()
        ));
        let watchdog = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                eprintln!("{message}");
                std::process::exit(EXIT_PEER_LOST);
            }
        });
        let result = operation();
        let _ = done.send(());
        let _ = watchdog.join();
        result
    }

    /// The ranks other than this one, in words.
    fn others(&self) -> String {
        let others: Vec<String> = (0..self.settings.nodes)
            .filter(|&r| r != self.settings.rank)
            .map(|r| r.to_string())
            .collect();
        match others.as_slice() {
            [one] => format!("rank {one}"),
            many => format!("one of ranks {}", many.join(", ")),
        }
    }

    /// `problem` as the error line of this node.
    fn failure(&self, problem: &str) -> String {
        format!(
            "error: node rank {} of {}: {problem}. Checkpoints written so far are intact: start every node again with --resume.",
            self.settings.rank, self.settings.nodes
        )
    }

    /// Summing `what` failed (burn-collective reports a lost peer by its own node
    /// numbering, not by rank): the run cannot go on in step with the others.
    fn lost(&self, what: &str, error: CollectiveError) -> ! {
        let problem =
            format!("summing {what} failed ({error:?}): {} died or never joined", self.others());
        eprintln!("{}", self.failure(&problem));
        std::process::exit(EXIT_PEER_LOST);
    }
}

/// Makes this process's servers listen on `host` only (burn-communication, patched).
fn listen_on(host: IpAddr) -> Result<(), TrainError> {
    burn_communication::websocket::set_bind_host(host).or_else(|already| match already == host {
        true => Ok(()),
        false => Err(TrainError::Data(format!(
            "this process already listens on {already}; it cannot also listen on {host}"
        ))),
    })
}

/// Serves burn-collective's orchestrator on `port` from a thread of its own.
fn start_orchestrator(port: u16) -> Result<(), TrainError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TrainError::Data(format!("cannot start the coordinator's runtime: {e}")))?;
    std::thread::spawn(move || runtime.block_on(burn_collective::start_global_orchestrator(port)));
    Ok(())
}

/// Takes every float parameter's gradient out of `grads` (zeros where it has none), as a
/// flat tensor, in visiting order.
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = self
            .grads
            .remove::<B::InnerBackend, D>(param.id)
            .unwrap_or_else(|| param.val().inner().zeros_like());
        let size = grad.shape().num_elements();
        self.parts.push(grad.reshape([size]));
    }
}

/// Puts the pieces of a flat gradient back, in the order [`Flatten`] took them.
struct Unflatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let dims = param.val().dims();
        let size: usize = dims.iter().product();
        let piece = self.flat.clone().narrow(0, self.offset, size).reshape(dims);
        self.grads.register::<B::InnerBackend, D>(param.id, piece);
        self.offset += size;
    }
}
