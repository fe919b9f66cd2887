"""Web console: the team server (persistence, sign-in, access control, schedules, pages, API)."""
