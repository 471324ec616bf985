"""Run records, their HTML report, the leaderboard and the terminal table."""
