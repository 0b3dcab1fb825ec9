"""Lists the tools of an MCP server and calls one, with the Python `mcp` SDK (2.x).

Usage: mcp_client.py TARGET TOOL ARGUMENTS_JSON
TARGET is a Streamable HTTP URL (the bearer token comes from $MCP_TOKEN, if set), or
`stdio:<JSON list: command and arguments>` to start a stdio server (it inherits the environment).
Prints one JSON line: {"protocol":...,"tools":[names],"result":{...}} or {"error":"..."} (exit 2).
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


async def exercise(session: ClientSession, tool: str, arguments: dict) -> dict:
    init = await session.initialize()
    tools = await session.list_tools()
    result = await session.call_tool(tool, arguments)
    return {
        "protocol": str(init.protocol_version),
        "tools": [t.name for t in tools.tools],
        "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


async def main(target: str, tool: str, arguments: dict) -> dict:
    if target.startswith("stdio:"):
        command = json.loads(target[len("stdio:"):])
        params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                return await exercise(session, tool, arguments)
    token = os.environ.get("MCP_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(target, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                return await exercise(session, tool, arguments)


def flatten(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(flatten(inner) for inner in err.exceptions)
    return f"{type(err).__name__}: {err}"


if __name__ == "__main__":
    try:
        out = asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
    except BaseException as err:  # noqa: BLE001 - the test reads the message
        print(json.dumps({"error": flatten(err)}))
        sys.exit(2)
    print(json.dumps(out))
