"""Web console: the team server's persistence, authentication, access control, schedules, pages and API."""
