"""Services: the logic behind the routes (chat now; documents, retrieval, feedback and jobs join them)."""
