"""DB: AgentBench's DBBench (std, 300 questions) on a real MariaDB server or on SQLite."""
