"""What the notebooks call: parameter checks (params), the views they show, the widget explorer."""
