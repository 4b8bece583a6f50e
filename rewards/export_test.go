package rewards

// SetGiftChunk sets how many members one transaction of a birthday-gifts
// run gives gifts to, until the returned function puts it back.
func SetGiftChunk(n int) func() {
	was := giftChunk
	giftChunk = n
	return func() { giftChunk = was }
}

// ExpireGiftsSQL is the statement that marks lapsed gifts expired.
const ExpireGiftsSQL = expireGiftsSQL
