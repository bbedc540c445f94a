"""Configuration: typed schemas, ConfigStore registration, and the cross-group rules."""
