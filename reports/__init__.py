"""Rendering: read the registry, build plain view models, hand them to Jinja2 templates."""
