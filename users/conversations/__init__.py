"""Conversations, turns and replies as chat and collection share them: queueing a reply for the
`generate` worker, its Redis token stream and the SSE relay to the browser, stop and retry."""
