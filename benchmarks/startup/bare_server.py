"""The floor: a bare grpc.aio server answering constants (no connector framework at all).

It answers ListAgents with one agent, CreateTask with a constant resource_meta and GetTask with a constant
SUCCEEDED resource, so it is the floor both for start-up (scenario 1) and for RPC throughput (scenario 2).
It registers its services with flyteidl's generated ``add_*_to_server`` functions and runs on the standard event
loop, as a bare server written against flyteidl does: that is the floor the goal is measured against.

``--tuned`` also registers the services as registered methods and runs on uvloop, the two things our host does
that any grpc.aio server could (an informational floor: what is left is our framework's own cost).

    python benchmarks/startup/bare_server.py PORT [--tuned]
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc

AGENTS = agent_pb2.ListAgentsResponse(agents=[agent_pb2.Agent(
    name="Bare", supported_task_types=["bare"], supported_task_categories=[agent_pb2.TaskCategory(name="bare")]
)])
CREATED = agent_pb2.CreateTaskResponse(resource_meta=b'{"job_id": "bare"}')
DONE = agent_pb2.GetTaskResponse(resource=agent_pb2.Resource(phase=3))  # SUCCEEDED


class Metadata(agent_pb2_grpc.AgentMetadataServiceServicer):
    async def ListAgents(self, request: agent_pb2.ListAgentsRequest, context: object) -> agent_pb2.ListAgentsResponse:
        return AGENTS


class Jobs(agent_pb2_grpc.AsyncAgentServiceServicer):
    async def CreateTask(self, request: agent_pb2.CreateTaskRequest, context: object) -> agent_pb2.CreateTaskResponse:
        return CREATED

    async def GetTask(self, request: agent_pb2.GetTaskRequest, context: object) -> agent_pb2.GetTaskResponse:
        return DONE


async def main(port: int, tuned: bool = False) -> None:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(Metadata(), server)
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(Jobs(), server)
    if tuned:
        jobs = Jobs()
        server.add_registered_method_handlers("flyteidl.service.AsyncAgentService", {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(jobs, name), request_deserializer=request.FromString,
                response_serializer=response.SerializeToString)
            for name, request, response in (
                ("CreateTask", agent_pb2.CreateTaskRequest, agent_pb2.CreateTaskResponse),
                ("GetTask", agent_pb2.GetTaskRequest, agent_pb2.GetTaskResponse))
        })
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    if "--tuned" in sys.argv[2:]:
        import uvloop

        uvloop.run(main(int(sys.argv[1]), tuned=True))
    else:
        asyncio.run(main(int(sys.argv[1])))
