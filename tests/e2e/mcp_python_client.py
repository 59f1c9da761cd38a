"""An agent on the official MCP Python SDK (`mcp`, pinned in
scripts/tooling/python/requirements.txt) talking to ops-mcp over Streamable
HTTP. tests/e2e/ops_mcp.test.mjs runs it with the cache's venv:

    MCP_URL=... OPS_MCP_TOKEN=... python tests/e2e/mcp_python_client.py deploy <git_sha>
    MCP_URL=... OPS_MCP_TOKEN=... python tests/e2e/mcp_python_client.py poll <handle> [timeout_s]

`deploy` initializes, lists the tools, calls get_queue_stats and asks for a
deploy of test-project to production at <git_sha>; `poll` calls get_approval
until the handle is no longer awaiting approval (or the timeout passes). Each
prints one JSON line with what it saw; an error is printed the same way
({"error": ...}) with exit status 1.
"""

import asyncio
import json
import os
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["MCP_URL"]
TOKEN = os.environ["OPS_MCP_TOKEN"]


async def session_run(work):
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=30) as session:
                init = await session.initialize()
                return await work(session, init)


def tool_result(result):
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
    }


async def deploy(git_sha):
    async def work(session, init):
        tools = await session.list_tools()
        stats = await session.call_tool("get_queue_stats", {})
        asked = await session.call_tool(
            "deploy_release",
            {"project_id": "test-project", "env": "production", "git_sha": git_sha},
        )
        return {
            "protocol_version": init.protocol_version,
            "server": init.server_info.name,
            "tools": sorted(t.name for t in tools.tools),
            "read_only_hints": {t.name: t.annotations.read_only_hint for t in tools.tools},
            "queue_stats": tool_result(stats),
            "deploy": tool_result(asked),
        }

    return await session_run(work)


async def poll(handle, timeout_s):
    async def work(session, init):
        deadline = time.monotonic() + timeout_s
        polls = 0
        while True:
            polls += 1
            result = await session.call_tool("get_approval", {"handle": handle})
            seen = tool_result(result)
            status = (seen["structured"] or {}).get("status")
            if seen["is_error"] or status != "awaiting_approval" or time.monotonic() > deadline:
                return {"polls": polls, "approval": seen}
            await asyncio.sleep(0.25)

    return await session_run(work)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if mode == "deploy" and len(sys.argv) == 3:
            out = asyncio.run(deploy(sys.argv[2]))
        elif mode == "poll" and len(sys.argv) in (3, 4):
            out = asyncio.run(poll(sys.argv[2], float(sys.argv[3]) if len(sys.argv) == 4 else 20.0))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BaseException as e:  # noqa: BLE001 - reported to the test as one line
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
