"""The CRM: records, events, and the source they are read from."""
