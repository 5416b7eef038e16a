package crowdsec

// SetTokenForTest replaces the held JWT, to make the LAPI refuse it.
func SetTokenForTest(c *Client, token string) {
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
}

// TokenForTest returns the held JWT.
func TokenForTest(c *Client) string { return c.currentToken() }
