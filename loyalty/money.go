package loyalty

// currencyExponents maps ISO 4217 codes to their minor-unit exponent. Codes
// not listed are not accepted as a program currency.
var currencyExponents = map[string]int32{
	"AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0,
	"CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2,
	"IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MAD": 2,
	"MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PEN": 2, "PHP": 2, "PKR": 2,
	"PLN": 2, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2,
	"TND": 3, "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "VND": 0, "ZAR": 2,
}

// CurrencyExponent is the number of minor-unit digits of an ISO 4217 code.
func CurrencyExponent(code string) (int32, bool) {
	e, ok := currencyExponents[code]
	return e, ok
}

// MaxTotal bounds one purchase's total in minor units (ten trillion major
// units at two decimals): far above any real basket, low enough that sums of
// many purchases never approach the 64-bit limit.
const MaxTotal int64 = 1_000_000_000_000_000
