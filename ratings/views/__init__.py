"""Ratings views by audience: entry, rating, research."""
