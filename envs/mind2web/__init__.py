"""Mind2Web: action prediction on Mind2Web's released test pages, as AgentBench's multiple-choice tournament."""
