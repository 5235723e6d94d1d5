"""The source's side: selection, export, the peer link (agent, agentless), one peer's part
of a cycle, the dry run, the image-event watcher."""
