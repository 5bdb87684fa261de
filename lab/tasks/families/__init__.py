"""One module per task family; lab.tasks.registry names them."""
