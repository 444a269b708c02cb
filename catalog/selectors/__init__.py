"""Reads: visibility, search, taxonomy trees and facet counts."""
