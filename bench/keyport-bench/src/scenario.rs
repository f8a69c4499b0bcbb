//! The benchmark's targets, and the cells each target runs once per round.

use std::time::Duration;

use crate::api::Api;
use crate::client::Workload;

/// The three ways a request reaches the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Direct,
    Floor,
    Keyport,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Direct, Target::Floor, Target::Keyport];

    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Floor => "floor",
            Target::Keyport => "keyport",
        }
    }

    /// Targets in the order round `round` runs them: forwards in even
    /// rounds, backwards in odd ones, so no target always runs first or
    /// last after a cell change.
    pub fn order(round: u32) -> [Target; 3] {
        let mut order = Self::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        order
    }
}

/// Base URLs of the three targets and the client token.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub mock: String,
    pub floor: String,
    pub keyport: String,
    pub token: String,
}

impl Endpoints {
    /// Builds the URL of `api` on `target`, with the mock's query parameters.
    pub fn url(&self, target: Target, api: Api, stream: bool, params: &str) -> String {
        let (base, path) = match target {
            Target::Direct => (&self.mock, api.mock_path(stream)),
            Target::Floor => (&self.floor, api.mock_path(stream)),
            Target::Keyport => (&self.keyport, api.keyport_path(stream)),
        };
        let query: Vec<&str> = api
            .fixed_query(stream)
            .into_iter()
            .chain((!params.is_empty()).then_some(params))
            .collect();
        if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{}", query.join("&"))
        }
    }
}

/// A closed-loop HTTP load cell, run with wrk: OpenAI JSON completions.
#[derive(Debug, Clone)]
pub struct WrkCell {
    pub id: &'static str,
    pub title: &'static str,
    pub connections: u32,
    pub duration: Duration,
    /// Filler bytes in the request body.
    pub request_pad: usize,
    /// Mock query parameters, such as the response size.
    pub params: &'static str,
}

/// A streaming cell, run with the streaming client.
#[derive(Debug, Clone)]
pub struct StreamCell {
    pub id: &'static str,
    pub title: &'static str,
    pub api: Api,
    pub workers: usize,
    pub workload: Workload,
    pub events: u32,
    pub interval: Duration,
    /// Events the mock writes together in one frame.
    pub burst: u32,
}

impl StreamCell {
    pub fn params(&self) -> String {
        format!(
            "events={}&interval_us={}&burst={}",
            self.events,
            self.interval.as_micros(),
            self.burst
        )
    }
}

#[derive(Debug, Clone)]
pub enum Cell {
    Wrk(WrkCell),
    Stream(StreamCell),
}

impl Cell {
    pub fn id(&self) -> &'static str {
        match self {
            Cell::Wrk(cell) => cell.id,
            Cell::Stream(cell) => cell.id,
        }
    }
}

pub const ONE_MIB: usize = 1024 * 1024;

/// Events per paced stream and their spacing: 100 events at 10 ms, one
/// second per stream, about the pace of a fast model.
pub const PACED_EVENTS: u32 = 100;
pub const PACED_INTERVAL: Duration = Duration::from_millis(10);
pub const PACED_STREAMS: usize = 64;

/// The cell whose mock writes `BURST_SIZE` events per frame, 20 ms apart,
/// so each frame reaches the client in a read of its own unless a proxy
/// splits it.
pub const BURST_CELL: &str = "burst-openai";
pub const BURST_EVENTS: u32 = 40;
pub const BURST_SIZE: u32 = 8;

/// Lists every cell in the order each round runs them. `duration` is the
/// length of each timed run.
pub fn cells(duration: Duration) -> Vec<Cell> {
    let wrk = |id, title, connections, request_pad, params| {
        Cell::Wrk(WrkCell {
            id,
            title,
            connections,
            duration,
            request_pad,
            params,
        })
    };
    let paced = |id, title, api| {
        Cell::Stream(StreamCell {
            id,
            title,
            api,
            workers: PACED_STREAMS,
            workload: Workload::Count(1),
            events: PACED_EVENTS,
            interval: PACED_INTERVAL,
            burst: 1,
        })
    };
    vec![
        wrk("json-c1", "JSON, c=1", 1, 0, ""),
        wrk("json-c16", "JSON, c=16", 16, 0, ""),
        wrk("json-c64", "JSON, c=64", 64, 0, ""),
        wrk("request-1mib", "1 MiB request body, c=16", 16, ONE_MIB, ""),
        wrk(
            "response-1mib",
            "1 MiB response body, c=16",
            16,
            0,
            "size=1048576",
        ),
        Cell::Stream(StreamCell {
            id: "ttfb-c1",
            title: "OpenAI stream, 3 events, c=1 (200 streams)",
            api: Api::OpenAi,
            workers: 1,
            workload: Workload::Count(200),
            events: 3,
            interval: Duration::ZERO,
            burst: 1,
        }),
        paced("paced-openai", "64 paced OpenAI streams", Api::OpenAi),
        paced(
            "paced-anthropic",
            "64 paced Anthropic streams",
            Api::Anthropic,
        ),
        paced("paced-gemini", "64 paced Gemini streams", Api::Gemini),
        Cell::Stream(StreamCell {
            id: "events-1000",
            title: "1,000-event OpenAI streams, c=16",
            api: Api::OpenAi,
            workers: 16,
            workload: Workload::For(duration),
            events: 1000,
            interval: Duration::ZERO,
            burst: 1,
        }),
        Cell::Stream(StreamCell {
            id: BURST_CELL,
            title: "OpenAI streams written 8 events at a time, c=1 (20 streams)",
            api: Api::OpenAi,
            workers: 1,
            workload: Workload::Count(20),
            events: BURST_EVENTS,
            interval: Duration::from_millis(20),
            burst: BURST_SIZE,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates() {
        assert_eq!(
            Target::order(0),
            [Target::Direct, Target::Floor, Target::Keyport]
        );
        assert_eq!(
            Target::order(1),
            [Target::Keyport, Target::Floor, Target::Direct]
        );
    }

    #[test]
    fn urls_keep_the_fixed_query_first() {
        let endpoints = Endpoints {
            mock: "http://127.0.0.1:1".into(),
            floor: "http://127.0.0.1:2".into(),
            keyport: "http://127.0.0.1:3".into(),
            token: "kp_x".into(),
        };
        assert_eq!(
            endpoints.url(Target::Keyport, Api::Gemini, true, "events=3"),
            "http://127.0.0.1:3/llm/google/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&events=3"
        );
        assert_eq!(
            endpoints.url(Target::Floor, Api::OpenAi, false, ""),
            "http://127.0.0.1:2/v1/chat/completions"
        );
    }

    #[test]
    fn cell_ids_are_unique() {
        let cells = cells(Duration::from_secs(1));
        let mut ids: Vec<&str> = cells.iter().map(Cell::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cells.len());
    }
}
