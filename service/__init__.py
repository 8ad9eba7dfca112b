"""The HTTP service: CRM webhooks in, verified and mapped onto CRM events, queued durably for the graph."""
