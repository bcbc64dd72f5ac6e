"""What each task provides behind one interface: its data, models, loss, metrics, objective and cache codec."""
