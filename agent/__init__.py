"""Background work for calls: context packages out, streamed results back, over Redis Streams.

    call (interaction side)                    Redis                       workers (any number)
    AgentClient.submit() --> outbox --> XADD microturn:ctx --> group `agents` --> Worker
    AgentClient.results() <-- XREAD microturn:results:{call_id} <-- started/partial/final|error
                                         microturn:ctx:dead <-- poison or too many deliveries

Modules: `types` (the wire: ContextPackage, AgentResult), `bus` (keys, scripts, publish, emit),
`client` (one call's AgentClient), `worker` (Worker and `microturn agent`), `weave` (results into
the call: `agent.task` events, model text, `/ask`), `backends` (builtin tools, OpenAI-compatible).
See docs/agent.md for the delivery semantics.
"""

from agent.types import AgentResult, ContextPackage, PackageError, Turn

__all__ = ["AgentResult", "ContextPackage", "PackageError", "Turn"]
